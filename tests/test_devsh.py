"""dev.sh, the entry point of people and CI: which notebooks `execute` runs,
where it runs from, and the quick lane's private cache and deselection."""
import os
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEV_SH = ROOT / 'dev.sh'
# The name every earlier run used: any user of the machine could make it first.
PREDICTABLE_CACHE = f'd2lrnn-test-cache-{os.getuid()}'


def dev_sh(*args, script=DEV_SH, cwd, env=None):
    return subprocess.run(['bash', str(script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def every_notebook():
    """The book's notebooks as paths relative to the project, chapters first."""
    book = ROOT / 'book'
    return [str(p.relative_to(ROOT)) for p in
            sorted(book.glob('*.ipynb')) + sorted(book.glob('exercises/*.ipynb'))]


def test_execute_without_arguments_runs_every_notebook_exercises_included(tmp_path):
    result = dev_sh('execute', '--dry-run', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    listed = result.stdout.splitlines()
    assert listed == every_notebook()
    assert 'book/07-training.ipynb' in listed
    assert any(name.startswith('book/exercises/ex') for name in listed)


def test_execute_reads_the_notebooks_named_from_the_callers_folder():
    result = dev_sh('execute', '--dry-run', '04-model.ipynb',
                    'exercises/ex3-sampling.ipynb', cwd=ROOT / 'book')
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ['book/04-model.ipynb',
                                          'book/exercises/ex3-sampling.ipynb']


def test_execute_refuses_what_is_not_a_notebook_in_one_line(tmp_path):
    for name in ['book/no-such-page.ipynb', 'README.md']:
        result = dev_sh('execute', '--dry-run', name, cwd=ROOT)
        assert result.returncode == 1
        assert result.stdout == ''
        assert result.stderr.count('\n') == 1, result.stderr
        assert 'no notebook at' in result.stderr and name in result.stderr


def test_dev_sh_called_through_a_symlink_works_in_the_project(tmp_path):
    link = tmp_path / 'dev.sh'
    link.symlink_to(DEV_SH)
    result = dev_sh('execute', '--dry-run', script=link, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == every_notebook()
    assert sorted(p.name for p in tmp_path.iterdir()) == ['dev.sh']


def test_the_quick_lane_leaves_out_slow_tests_and_caches_privately(tmp_path):
    # Two probe tests run by `dev.sh test --quick` in this environment: one
    # reports the native operator's cache while the run lasts, the other is
    # slow and fails, so it must be left out.
    probe = tmp_path / 'test_probe.py'
    report = tmp_path / 'report'
    probe.write_text(
        'import os, pytest\n'
        'def test_cache():\n'
        '    path = os.environ["D2LRNN_CACHE_DIR"]\n'
        '    st = os.stat(path)\n'
        f'    open({str(report)!r}, "w").write(\n'
        '        f"{path} {st.st_mode:o} {st.st_uid}")\n'
        '@pytest.mark.slow\n'
        'def test_slow():\n'
        '    assert False, "a slow test ran in the quick lane"\n')
    env = {k: v for k, v in os.environ.items() if k != 'D2LRNN_CACHE_DIR'}
    env.update(D2LRNN_PYTHON=sys.executable, D2LRNN_VENV=sys.prefix,
               TMPDIR=str(tmp_path))
    result = dev_sh('test', '--quick', str(probe), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert '1 passed, 1 deselected' in result.stdout
    path, mode, uid = report.read_text().split()
    cache = Path(path)
    assert cache.parent == tmp_path and cache.name != PREDICTABLE_CACHE
    # A directory only its owner may enter, gone once the run is over.
    assert int(mode, 8) == stat.S_IFDIR | 0o700 and int(uid) == os.getuid()
    assert not cache.exists()



def run_lanes_with_stubs(book_status=0, failing='', book_seconds=0):
    """dev.sh's run_lanes with the first Python 3.11 and another, 3.12, where
    pytest and the book's build only say what they would run (pytest fails
    on arguments holding `failing`): (exit status, the lines printed)."""
    script = (
        f'source {DEV_SH}\n'
        'run_pytest() { echo "pytest $PY $*"; [[ -z $FAILING || $* != *$FAILING* ]]; }\n'
        f'build_book() {{ sleep {book_seconds}; echo built; return {book_status}; }}\n'
        'venv_for() { echo "venv-$1"; }\n'
        'PY=venv-3.11/bin/python PY_VER=3.11 VENV=venv-3.11\n'
        'run_lanes 3.12\n')
    result = subprocess.run(['bash', '-c', script], env={**os.environ, 'FAILING': failing},
                            capture_output=True, text=True, timeout=60)
    return result.returncode, result.stdout.splitlines()


def test_the_full_run_runs_every_test_once_the_browser_test_after_the_book():
    # The book takes a while: the other lane reaches the browser test first.
    status, lines = run_lanes_with_stubs(book_seconds=2)
    assert status == 0
    first, other = 'pytest venv-3.11/bin/python', 'pytest venv-3.12/bin/python'
    assert sorted(lines) == sorted([
        f'[3.11 500 epochs] {first} book/07-training.ipynb',
        '[book] built',
        f'[3.11 notebooks] {first} book --ignore=book/07-training.ipynb',
        f'[3.12 notebooks] {other} book --ignore=book/07-training.ipynb',
        f'[3.11 tests] {first} tests --ignore=tests/test_browser.py '
        '--ignore=tests/test_visible_code.py',
        f'[3.12 tests] {other} tests --ignore=tests/test_browser.py '
        '--ignore=tests/test_visible_code.py',
        f'[3.11 visible code] {first} tests/test_visible_code.py',
        f'[3.11 browser] {first} tests/test_browser.py'])
    assert lines.index('[book] built') < [i for i, line in enumerate(lines)
                                          if 'browser]' in line][0]
    # The jobs that leave a file out run it under the first Python.
    run_alone = {line.split()[-1] for line in lines if line.startswith(
        ('[3.11 500 epochs]', '[3.11 visible code]', '[3.11 browser]'))}
    assert run_alone == {'book/07-training.ipynb', 'tests/test_visible_code.py',
                         'tests/test_browser.py'}


def test_a_failure_in_either_lane_fails_the_run_and_a_broken_book_is_not_browsed():
    for failing in ['07-training', 'tests/test_visible_code.py', 'test_browser.py']:
        status, lines = run_lanes_with_stubs(failing=failing)
        assert status != 0, failing
        assert len(lines) == 8  # every other job ran all the same
    status, lines = run_lanes_with_stubs(book_status=1)
    assert status != 0
    assert '[3.11 browser] not run: the book did not build' in lines
    assert not any(line.startswith('[3.11 browser] pytest') for line in lines)
    assert len(lines) == 8
