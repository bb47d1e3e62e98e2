#!/usr/bin/env bash
# One entry point for people and CI. Each command creates (or reuses) a virtual
# environment with Python 3.11 or 3.12 and the pinned packages first.
#
#   bash dev.sh book      build the HTML book from the notebooks' stored outputs
#   bash dev.sh test      the whole test suite, as CI runs it: package, notebooks
#                         (nbval), visible code, browser; and again under the
#                         other supported Python, if present
#   bash dev.sh test --quick [pytest args]
#                         the inner loop: the unit tests not marked slow, under
#                         one Python, without the book, notebooks or browser
#   bash dev.sh execute [--dry-run] [NOTEBOOK...]
#                         re-run the notebooks named, else every one of book/
#                         (exercises included), storing their fresh outputs;
#                         --dry-run only lists them
#   bash dev.sh bench     the speed benchmark (bench/)
#   bash dev.sh setup     only create or update the virtual environment
#   bash dev.sh python V  print the path of a Python V (3.11 or 3.12), if found
#
# Which Python: D2LRNN_PYTHON=3.11 or 3.12 (or an interpreter's path) picks one;
# otherwise the version .venv was made with, else 3.11, else 3.12.
# Which venv: D2LRNN_VENV, else .venv if it is new or holds the chosen version,
# else .venv-3.11 or .venv-3.12: one environment per version, never mixed.
set -eo pipefail
# Where the caller stands (paths given to `execute` are relative to it), then
# the project's folder: that of the real file, when called through a symlink.
CALLER_DIR=$PWD
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")"
# MXNet 1.9.1 runs on these only: 3.13 needs numpy 2, which breaks MXNet.
SUPPORTED=(3.11 3.12)
# The 500-epoch chapter: run under the first Python of `test` only.
LONG_NOTEBOOK=book/07-training.ipynb
# The same thread count everywhere, so that seeded runs repeat bit for bit.
# (MXNet's threaded engine stays: MXNET_ENGINE_TYPE=NaiveEngine gives the same
# bits, but 30 seeded epochs of page 07's model took as much CPU and 10-20%
# longer beside another run, on a shared 2-core AMD EPYC.)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export MPLBACKEND=${MPLBACKEND:-Agg}

# The X.Y version of an interpreter, or nothing if it does not run.
version_of() {
  "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true
}

is_supported() {
  local v
  for v in "${SUPPORTED[@]}"; do [[ $1 == "$v" ]] && return 0; done
  return 1
}

# Print the path of a working Python $1 (X.Y): on PATH (a pyenv shim that is
# not active does not run, so it is skipped), in pyenv's versions, in /usr.
find_python() {
  local want=$1 cand path root roots=()
  for root in "$PYENV_ROOT" "$(pyenv root 2>/dev/null)" "$HOME/.pyenv"; do
    [[ -n $root ]] && roots+=("$root/versions/$want".*/bin/"python$want")
  done
  for cand in "python$want" python3 \
              $(ls -d "${roots[@]}" 2>/dev/null | sort -urV) \
              "/usr/local/bin/python$want" "/usr/bin/python$want"; do
    path=$(command -v "$cand" 2>/dev/null) || continue
    if [[ $(version_of "$path") == "$want" ]]; then
      # The shim's target, so the venv does not depend on PYENV_VERSION.
      "$path" -c 'import sys; print(sys.executable)'
      return 0
    fi
  done
  return 1
}

no_python() {
  cat >&2 <<EOF
dev.sh: $1
MXNet 1.9.1 needs Python 3.11 or 3.12 (3.13 needs numpy 2, which breaks it).
Install one, with its venv module, and retry, for example:
  Ubuntu 24.04:  sudo apt-get install python3.12-venv
  Debian 12:     sudo apt-get install python3.11-venv
  pyenv:         pyenv install 3.12
EOF
  exit 1
}

# Sets PY_EXE (the interpreter) and PY_VER (its X.Y) from $1: a version, a
# path, or empty for the default choice.
choose_python() {
  local want=$1 v
  if [[ $want == */* || $want == python* ]]; then
    PY_EXE=$(command -v "$want") || no_python "D2LRNN_PYTHON=$want not found."
    PY_VER=$(version_of "$PY_EXE")
    is_supported "$PY_VER" ||
      no_python "D2LRNN_PYTHON=$want is Python ${PY_VER:-?}."
    return
  fi
  if [[ -n $want ]]; then
    is_supported "$want" || no_python "D2LRNN_PYTHON=$want is not supported."
    PY_EXE=$(find_python "$want") || no_python "Python $want not found."
    PY_VER=$want
    return
  fi
  # No choice made: keep the version of an existing .venv, else the first.
  v=$(version_of .venv/bin/python)
  for want in $v "${SUPPORTED[@]}"; do
    if is_supported "$want" && PY_EXE=$(find_python "$want"); then
      PY_VER=$want
      return
    fi
  done
  no_python "found neither Python 3.11 nor 3.12."
}

# The venv directory for Python $1 (X.Y).
venv_for() {
  if [[ -n $D2LRNN_VENV ]]; then
    echo "$D2LRNN_VENV"
  elif [[ ! -e .venv || $(version_of .venv/bin/python) == "$1" ]]; then
    echo .venv
  else
    echo ".venv-$1"
  fi
}

# Create or update the venv $1 with interpreter $2; sets VENV and PY.
setup() {
  VENV=$1
  PY=$VENV/bin/python
  if [[ ! -x $PY ]]; then
    "$2" -m venv "$VENV" || no_python "$2 could not make a venv."
    echo '*' > "$VENV/.gitignore"  # as Python 3.13's venv does: never committed
  fi
  if [[ $(version_of "$PY") != $(version_of "$2") ]]; then
    echo "dev.sh: $VENV holds Python $(version_of "$PY"), not" \
         "$(version_of "$2"); remove it or set D2LRNN_VENV." >&2
    exit 1
  fi
  # One install at a time: several dev.sh may start at once on a stale venv.
  if command -v flock >/dev/null; then
    exec 9>"$VENV/.setup.lock"
    flock 9
  fi
  local want have
  # setup.py and _compat.py make the start-up hook the install ships.
  want=$(cat pyproject.toml setup.py d2lrnn/_compat.py requirements.lock |
         sha1sum | cut -c1-40)
  have=$(cat "$VENV/.installed" 2>/dev/null || true)
  if [[ $want != "$have" ]]; then
    local pip=("$PY" -m pip install --quiet --disable-pip-version-check
               -c requirements.lock)
    "${pip[@]}" -e '.[book,test]'
    # d2l, the tests' reference, pins numpy 1.23.5, which has no wheel for
    # 3.12: there it comes without its dependencies (the test extra lists
    # those it imports). A no-op where it is installed already.
    "${pip[@]}" --no-deps d2l
    echo "$want" > "$VENV/.installed"
  fi
  exec 9>&-
}

build_book() {
  # -W: a warning fails the build; -n: check every cross-reference.
  "$VENV/bin/jupyter-book" build . -W -n --keep-going
}

# pytest over the tests and notebooks given, in one process, with nbval.
run_pytest() {
  # --durations: the slowest tests, in the log, to see where the time goes
  "$PY" -m pytest --nbval --nbval-current-env --durations=12 \
    --nbval-sanitize-with tests/sanitize.cfg --nbval-cell-timeout 1800 "$@"
}

# The inner loop: the unit tests not marked slow, under one Python, without
# the book, the notebooks or the browser; arguments go to pytest (-x, -k NAME,
# a test file).
run_quick() {
  "$PY" -m pytest -m 'not slow' --durations=12 \
    --ignore=tests/test_browser.py "$@"
}

# Sets the variable named $1 to a new directory only this user can enter,
# named after $2 and removed when dev.sh exits.
TEMP_DIRS=()
trap 'rm -rf "${TEMP_DIRS[@]}"' EXIT
new_temp_dir() {
  local dir
  dir=$(mktemp -d "${TMPDIR:-/tmp}/d2lrnn-$2.XXXXXXXX")
  TEMP_DIRS+=("$dir")
  printf -v "$1" '%s' "$dir"
}

# A cache of the native operator private to this run: a fixed name in the
# shared /tmp could be made first by another user, who would then choose the
# library the tests load. D2LRNN_CACHE_DIR set by the caller is kept.
use_private_cache() {
  [[ -n ${D2LRNN_CACHE_DIR:-} ]] && return
  new_temp_dir D2LRNN_CACHE_DIR test-cache
  export D2LRNN_CACHE_DIR
}

# The notebooks `execute` runs, one a line: those given (relative to the
# caller's folder), else every notebook of the book, exercises included.
notebooks_to_execute() {
  local nb
  if (($# == 0)); then
    printf '%s\n' book/*.ipynb book/exercises/*.ipynb
    return
  fi
  for nb in "$@"; do
    [[ $nb == /* ]] || nb=$CALLER_DIR/$nb
    if [[ $nb != *.ipynb || ! -f $nb ]]; then
      echo "dev.sh: execute: no notebook at $nb; name .ipynb files," \
           "for example book/04-model.ipynb." >&2
      return 1
    fi
    printf '%s\n' "${nb#"$PWD"/}"
  done
}

# Each line of a command's output, prefixed with a label: two lanes print at once.
labelled() {
  local label=$1
  shift
  "$@" 2>&1 | sed -u "s/^/[$label] /"
}

# The full run: the chapter and the jobs of JOBS (below), on two lanes, one
# per core (one thread each). The chapter is the longest test by far (on a
# 2-core Xeon with AVX-512 15 min, against 4 and 3.5 for the tests and
# notebooks under each Python; on a shared 2-core AMD EPYC about 35 min
# beside the other lane), so lane 1 starts with it and lane 2 with the
# queue; whichever lane is free takes the queue's next job.
#   book               the HTML, first: a broken build shows at once
#   tests V, notebooks V   the tests, and nbval on the other notebooks,
#                      under the first Python, then each Python V in $@
#                      (their venvs set up already)
#   visible            the visible-code test, under the first Python (the
#                      stored outputs are the same on either)
#   browser            the browser test, on the HTML once it is built
# Fails if any job fails.
run_lanes() {
  local v status=0 one two
  JOBS=(book)
  for v in "$PY_VER" "$@"; do JOBS+=("notebooks $v" "tests $v"); done
  JOBS+=(visible browser)
  new_temp_dir QUEUE queue
  printf '%s\n' "${JOBS[@]}" > "$QUEUE/jobs"
  FIRST_PY=$PY
  ( labelled "$PY_VER 500 epochs" run_pytest "$LONG_NOTEBOOK" || status=1
    work_queue || status=1
    exit "$status" ) &
  one=$!
  work_queue &
  two=$!
  wait "$two" || status=1
  wait "$one" || status=1
  return "$status"
}

# Runs the queue's jobs, one after another, until none is left; fails if one
# of them failed.
work_queue() {
  local job status=0
  while job=$(take_job); do
    run_job "$job" || status=1
  done
  return "$status"
}

# Prints the queue's next job and removes it; fails when the queue is empty.
# The lock is a directory: mkdir is atomic everywhere.
take_job() {
  local job
  until mkdir "$QUEUE/lock" 2>/dev/null; do sleep 0.1; done
  job=$(head -n 1 "$QUEUE/jobs")
  tail -n +2 "$QUEUE/jobs" > "$QUEUE/rest"
  mv "$QUEUE/rest" "$QUEUE/jobs"
  rmdir "$QUEUE/lock"
  [[ -n $job ]] && printf '%s\n' "$job"
}

run_job() {
  local job=$1 v=${1#* } PY=$FIRST_PY
  [[ $v != "$PY_VER" && $v != "$1" ]] && PY=$(venv_for "$v")/bin/python
  case $job in
    book)
      labelled book build_book && touch "$QUEUE/built"
      local built=$?
      touch "$QUEUE/book-done"
      return "$built"
      ;;
    tests\ *)
      labelled "$v tests" run_pytest tests --ignore=tests/test_browser.py \
        --ignore=tests/test_visible_code.py
      ;;
    notebooks\ *)
      labelled "$v notebooks" run_pytest book --ignore="$LONG_NOTEBOOK"
      ;;
    visible)
      labelled "$PY_VER visible code" run_pytest tests/test_visible_code.py
      ;;
    browser)
      until [[ -e $QUEUE/book-done ]]; do sleep 1; done
      if [[ ! -e $QUEUE/built ]]; then
        echo "[$PY_VER browser] not run: the book did not build"
        return 1
      fi
      labelled "$PY_VER browser" run_pytest tests/test_browser.py
      ;;
  esac
}

usage() {
  echo "usage: bash dev.sh book | test [--quick [pytest args]] |" \
       "execute [--dry-run] [NOTEBOOK...] | bench [args] | setup |" \
       "python 3.11|3.12" >&2
  exit 2
}

main() {
  local cmd=${1:-} dry_run list first first_venv first_py v exe others
  (($#)) && shift
  # `execute`'s list before anything is installed: --dry-run prints it only.
  if [[ $cmd == execute ]]; then
    dry_run=
    [[ ${1:-} == --dry-run ]] && dry_run=1 && shift
    list=$(notebooks_to_execute "$@")
    mapfile -t NOTEBOOKS <<< "$list"
    [[ -n $dry_run ]] && printf '%s\n' "${NOTEBOOKS[@]}" && exit 0
  fi
  case $cmd in
    book|test|execute|bench|setup)
      choose_python "${D2LRNN_PYTHON:-}"
      setup "$(venv_for "$PY_VER")" "$PY_EXE"
      echo "dev.sh: Python $PY_VER in $VENV" >&2
      ;;
  esac

  case $cmd in
    book)
      build_book
      echo "The book is in _build/html/index.html"
      ;;
    test)
      use_private_cache
      if [[ ${1:-} == --quick ]]; then
        shift
        run_quick "$@"
        exit
      fi
      (($# == 0)) || usage
      # The other supported Pythons found here, unless one was asked for: the
      # same tests and stored outputs, except the 500-epoch chapter, and the
      # browser test (the HTML is the same from either).
      first=$PY_VER first_venv=$VENV first_py=$PY others=()
      if [[ -z $D2LRNN_PYTHON ]]; then
        for v in "${SUPPORTED[@]}"; do
          [[ $v != "$first" ]] && exe=$(find_python "$v") || continue
          setup "$(venv_for "$v")" "$exe"
          echo "dev.sh: also Python $v in $VENV, without $LONG_NOTEBOOK," \
               "the visible-code and the browser test" >&2
          others+=("$v")
        done
      fi
      PY_VER=$first VENV=$first_venv PY=$first_py
      bash .ci/install-browser
      run_lanes "${others[@]}"
      ;;
    execute)
      # Fails on the first cell that raises; -1: no per-cell time limit.
      "$VENV/bin/jupyter" execute --inplace --timeout=-1 "${NOTEBOOKS[@]}"
      ;;
    bench)
      "$PY" bench/bench_speed.py "$@"
      ;;
    setup)
      ;;
    python)
      is_supported "${1:-}" || no_python "usage: bash dev.sh python 3.11|3.12"
      find_python "$1" || no_python "Python $1 not found."
      ;;
    *)
      usage
      ;;
  esac
}

# Sourced (tests/test_devsh.py does), it only defines its functions.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  main "$@"
fi
