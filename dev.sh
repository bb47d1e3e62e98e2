#!/usr/bin/env bash
# One entry point for people and CI. Each command creates (or reuses) the
# virtual environment .venv with Python 3.11 and the pinned packages first.
#
#   bash dev.sh book      build the HTML book from the notebooks' stored outputs
#   bash dev.sh test      the whole test suite: package, notebooks (nbval), browser
#   bash dev.sh execute   re-run every notebook and store its fresh outputs
#   bash dev.sh bench     the speed benchmark (bench/)
set -eo pipefail
cd "$(dirname "$0")"
VENV=${D2LRNN_VENV:-.venv}
PY=$VENV/bin/python
# The same thread count everywhere, so that seeded runs repeat bit for bit.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export MPLBACKEND=${MPLBACKEND:-Agg}

python311() {
  for cand in python3.11 python3 python; do
    if command -v "$cand" >/dev/null &&
       "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      echo "$cand"; return
    fi
  done
  echo "dev.sh: Python 3.11 is needed (mxnet 1.9.1 has no wheels for newer Pythons); install it and retry." >&2
  exit 1
}

setup() {
  [[ -x $PY ]] || "$(python311)" -m venv "$VENV"
  local want have
  want=$(cat pyproject.toml requirements.lock | sha1sum | cut -c1-40)
  have=$(cat "$VENV/.installed" 2>/dev/null || true)
  if [[ $want != "$have" ]]; then
    "$PY" -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[book,test]'
    echo "$want" > "$VENV/.installed"
  fi
}

build_book() {
  # -W: a warning fails the build; -n: check every cross-reference.
  "$VENV/bin/jupyter-book" build . -W -n --keep-going
}

case ${1:-} in
  book)
    setup
    build_book
    echo "The book is in _build/html/index.html"
    ;;
  test)
    setup
    bash .ci/install-browser
    build_book
    # Two workers (one thread each): the 15-minute training chapter runs beside
    # everything else. loadscope keeps each notebook's cells in order on one worker.
    "$PY" -m pytest tests book -n 2 --dist loadscope --nbval --nbval-current-env \
      --nbval-sanitize-with tests/sanitize.cfg --nbval-cell-timeout 1800
    ;;
  execute)
    setup
    shift
    # Fails on the first cell that raises; -1: no per-cell time limit.
    "$VENV/bin/jupyter" execute --inplace --timeout=-1 "${@:-book/*.ipynb}"
    ;;
  bench)
    setup
    shift
    "$PY" bench/bench_speed.py "$@"
    ;;
  *)
    echo "usage: bash dev.sh book|test|execute|bench" >&2
    exit 2
    ;;
esac
