"""The native operator's cache (the rules in d2lrnn/native.py's docstring): whose files
it loads, what it checks before loading, its locks, its temporary files, its errors.

Run as root, as CI runs: "another user" is uid 65534 (nobody), given files with chown
or acted by a child that drops to it after its imports (the interpreter lives under
/root, which nobody cannot read). As another user, a read-only directory is one that
user does not own."""
import errno
import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from d2lrnn import native
from d2lrnn.checkpoint import SHIPPED_MODEL

ROOT = Path(__file__).resolve().parent.parent
NOBODY = 65534
AS_ROOT = os.geteuid() == 0
pytestmark = pytest.mark.usefixtures('native_library')


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A cache directory of this test's own (not made yet), for this process and its
    children; no compiler until a test sets one."""
    directory = tmp_path / 'cache'
    monkeypatch.setenv('D2LRNN_CACHE_DIR', str(directory))
    monkeypatch.setenv('CXX', str(tmp_path / 'no-such-g++'))
    return directory


def use_compiler(monkeypatch, script):
    monkeypatch.setenv('CXX', str(script))


def run_python(code, as_user=None, timeout=120):
    """Run `code` in a fresh Python; with `as_user`, after its imports, as that uid."""
    drop = (f'import os; os.setgroups([]); os.setgid({as_user}); os.setuid({as_user})\n'
            if as_user is not None else '')
    code = ('import mxnet, d2lrnn\nfrom d2lrnn import native\n' + drop
            + textwrap.dedent(code) + 'import os, sys; sys.stdout.flush(); os._exit(0)\n')
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=timeout)


BUILD = '''
try:
    print(native.build()[1])
except native.NativeBuildError as e:
    print('NativeBuildError:', e)
'''


def exactly(message):
    """A pattern for pytest.raises that matches `message` and nothing else."""
    return f'^{re.escape(message)}$'


def record(library):
    """Write the record a build writes for `library` (as a forger could)."""
    data = Path(library).read_bytes()
    Path(f'{library}.sha256').write_text(f'{hashlib.sha256(data).hexdigest()} {len(data)}\n')


def built(cache):
    """The names in the cache directory, the lock left out."""
    return sorted(p.name for p in cache.iterdir() if p.suffix != '.lock')


@pytest.fixture(scope='session')
def planted_library(tmp_path_factory):
    """A library whose constructor creates the file $D2LRNN_PLANTED_MARK when loaded."""
    where = tmp_path_factory.mktemp('planted')
    source = where / 'planted.c'
    source.write_text(textwrap.dedent('''\
        #include <stdio.h>
        #include <stdlib.h>
        __attribute__((constructor)) static void planted(void) {
          const char* mark = getenv("D2LRNN_PLANTED_MARK");
          FILE* f = mark ? fopen(mark, "w") : NULL;
          if (f) fclose(f);
        }
        '''))
    subprocess.run(['gcc', '-shared', '-fPIC', '-o', where / 'planted.so', source],
                   check=True)
    return where / 'planted.so'


# --- rule 2: never a library another user could have written ---------------------------

@pytest.mark.parametrize('owner', ['another user', 'you'])
def test_a_library_in_a_cache_others_can_write_is_never_loaded(owner, planted_library,
                                                               cache, tmp_path, monkeypatch):
    if owner == 'another user' and not AS_ROOT:
        pytest.skip('only root can give a directory to another user')
    # Another user made the cache directory first, world-writable, and planted a
    # library (with a matching record) where the build would put it.
    cache.mkdir()
    cache.chmod(0o777)
    library = native.library_path()
    shutil.copy(planted_library, library)
    record(library)
    if owner == 'another user':
        for path in (cache, library, Path(f'{library}.sha256')):
            os.chown(path, NOBODY, NOBODY)
    mark = tmp_path / 'planted-code-ran'
    monkeypatch.setenv('D2LRNN_PLANTED_MARK', str(mark))
    done = run_python('''
        from mxnet import npx
        print(d2lrnn.FastRNNScratch(28, 8, npx.cpu()).native)
        ''')
    assert not mark.exists()
    assert done.stdout == 'False\n'
    why = (f'is owned by uid {NOBODY}, not by you (uid {os.geteuid()}) or root'
           if owner == 'another user'
           else 'is writable by group or others (mode 777)')
    assert done.stderr == (
        'd2lrnn: the native operator could not be built (the cache directory '
        f'{cache} {why}; refusing to load from it: set D2LRNN_CACHE_DIR to a '
        'directory of your own); using the Python path\n')


@pytest.mark.skipif(not AS_ROOT, reason='only root can give a file to another user')
def test_a_library_another_user_owns_in_your_cache_is_rebuilt(planted_library, cache,
                                                             fake_compiler, monkeypatch):
    script, log = fake_compiler()
    use_compiler(monkeypatch, script)
    cache.mkdir(mode=0o700)
    library = native.library_path()
    shutil.copy(planted_library, library)
    record(library)
    os.chown(library, NOBODY, NOBODY)
    assert native.build() == (library, True)
    assert library.stat().st_uid == os.geteuid() and len(log.read_text().splitlines()) == 1
    assert library.read_bytes() != planted_library.read_bytes()


@pytest.mark.parametrize('sticky', [False, True])
def test_a_directory_above_the_cache_that_others_can_write(sticky, tmp_path, cache,
                                                           fake_compiler, monkeypatch):
    # Others could move the cache away and put theirs in its place, unless the sticky
    # bit (as on /tmp) keeps them to their own files.
    shared = tmp_path / 'shared'
    shared.mkdir()
    shared.chmod(0o1777 if sticky else 0o777)
    monkeypatch.setenv('D2LRNN_CACHE_DIR', str(shared / 'mine'))
    use_compiler(monkeypatch, fake_compiler()[0])
    if sticky:
        assert native.build()[1]
        assert stat.S_IMODE((shared / 'mine').stat().st_mode) == 0o700
    else:
        with pytest.raises(native.NativeBuildError,
                           match=f'^{shared}, where the cache would be made, could be '
                                 'changed by another user; refusing to use it'):
            native.build()
        assert not (shared / 'mine').exists()  # nothing made there


@pytest.mark.parametrize('planted', [False, True])
def test_nothing_is_made_in_another_users_home(tmp_path, fake_compiler, monkeypatch,
                                               planted):
    # As root with another user's HOME (sudo -E): their ~/.cache must not become
    # root's, nor a .cache they planted as a symlink lead the build elsewhere.
    home, elsewhere = tmp_path / 'alice', tmp_path / 'elsewhere'
    home.mkdir()
    elsewhere.mkdir()
    if planted:
        (home / '.cache').symlink_to(elsewhere)
    theirs = {home.stat().st_ino, elsewhere.stat().st_ino}
    trusted = native._trusted_owner
    monkeypatch.setattr(native, '_trusted_owner',  # as if alice owned both
                        lambda st: st.st_ino not in theirs and trusted(st))
    monkeypatch.delenv('D2LRNN_CACHE_DIR')
    monkeypatch.delenv('XDG_CACHE_HOME', raising=False)
    monkeypatch.setenv('HOME', str(home))
    use_compiler(monkeypatch, fake_compiler()[0])
    where = elsewhere if planted else home
    with pytest.raises(native.NativeBuildError,
                       match=f'^{where}, where the cache would be made, could be changed'):
        native.build()
    assert sorted(p.name for p in home.iterdir()) == (['.cache'] if planted else [])
    assert list(elsewhere.iterdir()) == []


def test_a_cache_behind_a_symlink_is_used_at_its_real_path(tmp_path, fake_compiler,
                                                          monkeypatch):
    # checked once, then never followed again: whoever owns the link cannot turn it
    # elsewhere between the check and the load
    real = tmp_path / 'real'
    real.mkdir(mode=0o700)
    (tmp_path / 'link').symlink_to(real)
    monkeypatch.setenv('D2LRNN_CACHE_DIR', str(tmp_path / 'link'))
    use_compiler(monkeypatch, fake_compiler()[0])
    path, compiled = native.build()
    assert compiled and path.parent == real


def test_the_tests_own_cache_is_private():
    # set by tests/conftest.py (or by dev.sh): a directory nobody else could have made
    # first, at a name nobody can guess
    path = Path(os.environ['D2LRNN_CACHE_DIR'])
    st = path.stat()
    assert st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) & 0o077 == 0
    assert path.name != f'd2lrnn-test-cache-{os.getuid()}'


def test_tests_that_do_not_use_the_native_operator_never_compile_it(tmp_path):
    script = tmp_path / 'logging-g++'
    script.write_text(f'#!/bin/sh\necho "$*" >> {tmp_path / "calls.log"}\nexit 1\n')
    script.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != 'D2LRNN_CACHE_DIR'}
    env['CXX'] = str(script)
    done = subprocess.run([sys.executable, '-m', 'pytest', '-q', 'tests/test_data.py',
                           '-k', 'vocab'], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert ' passed' in done.stdout
    assert not (tmp_path / 'calls.log').exists()


# --- rule 5: locks ---------------------------------------------------------------------

@pytest.mark.parametrize('planted', ['symlink', 'fifo'])
def test_the_lock_never_follows_a_symlink_nor_waits_on_a_fifo(planted, cache, tmp_path,
                                                             fake_compiler, monkeypatch):
    script, log = fake_compiler()
    use_compiler(monkeypatch, script)
    cache.mkdir(mode=0o700)
    lock = native.library_path().with_suffix('.lock')
    victim = tmp_path / 'precious.txt'
    victim.write_text('precious\n')
    if planted == 'symlink':
        lock.symlink_to(victim)
    else:
        os.mkfifo(lock)
    done = run_python(BUILD)  # a child: a lock that blocked would block the tests
    assert done.stdout == (f'NativeBuildError: the lock {lock} is not a regular file; '
                           'remove it\n')
    assert victim.read_text() == 'precious\n' and not log.exists()


# --- rule 3: verified before loading; rule 4: built means loads -----------------------

def truncate(path, size=100_000):
    with open(path, 'r+b') as f:
        f.truncate(size)


def test_a_truncated_library_is_rebuilt(cache, fake_compiler, monkeypatch):
    script, log = fake_compiler()
    use_compiler(monkeypatch, script)
    library, _ = native.build()
    truncate(library)
    assert native.build() == (library, True)
    assert len(log.read_text().splitlines()) == 2
    assert native.build() == (library, False)
    # its record is checked too: same size, other bytes
    data = bytearray(library.read_bytes())
    data[5000] ^= 1
    library.write_bytes(data)
    assert native.build() == (library, True)


def test_build_native_and_generate_rebuild_a_truncated_library(cache, fake_compiler,
                                                               monkeypatch):
    script, log = fake_compiler()
    use_compiler(monkeypatch, script)
    library, _ = native.build()
    truncate(library)
    env = dict(os.environ)
    done = subprocess.run([sys.executable, '-m', 'd2lrnn', 'build-native'], env=env,
                          capture_output=True, text=True, timeout=300)
    assert (done.returncode, done.stdout, done.stderr) == (0, f'built: {library}\n', '')
    truncate(library)
    done = subprocess.run([sys.executable, '-m', 'd2lrnn', 'generate', '--checkpoint',
                           SHIPPED_MODEL, '--prefix', 'time traveller', '-n', '20'],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stderr == ''
    assert done.stdout.startswith('time traveller') and len(log.read_text().splitlines()) == 3


@pytest.mark.parametrize('planted', ['fifo', 'symlink', 'no record', 'directory'])
def test_anything_but_a_recorded_regular_file_is_never_loaded(planted, cache, tmp_path,
                                                              fake_compiler, monkeypatch,
                                                              native_library):
    script, log = fake_compiler()
    use_compiler(monkeypatch, script)
    cache.mkdir(mode=0o700)
    library = native.library_path()
    if planted == 'fifo':
        os.mkfifo(library)
    elif planted == 'symlink':  # to a good library, with its record: still not followed
        good = tmp_path / 'good.so'
        shutil.copy(native_library, good)
        library.symlink_to(good)
        record(library)
    elif planted == 'no record':  # as a build of an earlier version left it
        shutil.copy(native_library, library)
    else:
        library.mkdir()
    done = run_python(BUILD)  # a child: a FIFO that blocked would block the tests
    if planted == 'directory':
        assert done.stdout == f'NativeBuildError: {library} is a directory; remove it\n'
        return
    assert done.stdout == 'True\n', done.stderr
    assert stat.S_ISREG(os.lstat(library).st_mode)
    assert len(log.read_text().splitlines()) == 1


def test_a_library_that_does_not_load_is_never_built(cache, tmp_path, monkeypatch):
    # a broken $CXX that exits 0 and writes no library
    script = tmp_path / 'bogus-g++'
    script.write_text('#!/bin/sh\nwhile [ "$#" -gt 1 ]; do [ "$1" = -o ] && out="$2"; '
                      'shift; done\necho "not a library" > "$out"\n')
    script.chmod(0o755)
    use_compiler(monkeypatch, script)
    with pytest.raises(native.NativeBuildError,
                       match=exactly(f'the library {script} built does not load (file too '
                                     'short)')):
        native.build()
    assert built(cache) == []  # nothing left behind


def test_temporary_files_of_killed_builds_are_removed(cache, fake_compiler, monkeypatch):
    use_compiler(monkeypatch, fake_compiler()[0])
    cache.mkdir(mode=0o700)
    stem = native.library_path().stem
    old = time.time() - 2 * native.STALE_SECONDS
    left = {f'{stem}.build-k1ll3d.so': None,  # this key's: dead, whatever its age
            f'{stem}.build-k1ll3d.sha256': None,
            'tmpa8_zq1.so': old,  # an earlier version's
            'rnn_op-0123456789abcdef.build-x1.so': old,  # another key's, old
            'rnn_op-0123456789abcdef.build-x2.so': None,  # another key's, maybe building
            'notes.so': old}  # not ours to remove
    for name, mtime in left.items():
        (cache / name).write_text('')
        if mtime:
            os.utime(cache / name, (mtime, mtime))
    library, _ = native.build()
    assert built(cache) == sorted(['notes.so', 'rnn_op-0123456789abcdef.build-x2.so',
                                   library.name, library.name + '.sha256'])


# --- read-only and shared caches (rules 5 and 6) ---------------------------------------

@pytest.fixture
def shared(fake_compiler, monkeypatch):
    """A cache made by you in a directory another user can read, holding a build;
    (cache, library, uid of a user for whom it is read-only)."""
    directory = Path(tempfile.mkdtemp(prefix='d2lrnn-shared-'))
    directory.chmod(0o755)
    cache = directory / 'cache'
    monkeypatch.setenv('D2LRNN_CACHE_DIR', str(cache))
    use_compiler(monkeypatch, fake_compiler()[0])
    library, _ = native.build()
    cache.chmod(0o755)
    if not AS_ROOT:  # read-only for you too
        cache.chmod(0o555)
    yield cache, library, NOBODY if AS_ROOT else None
    cache.chmod(0o755)
    shutil.rmtree(directory)


def test_a_read_only_shared_cache_with_a_verified_library_is_used(shared):
    cache, library, user = shared
    done = run_python('''
        print(native.build())
        print(native.load(required=True))
        ''', as_user=user)
    assert done.stdout == f'(PosixPath({str(library)!r}), False)\nTrue\n', done.stderr


def test_a_read_only_cache_with_a_damaged_library_says_so_in_one_line(shared):
    cache, library, user = shared
    size = library.stat().st_size
    truncate(library)
    done = run_python(BUILD, as_user=user)
    assert done.stdout == (
        f'NativeBuildError: cannot rebuild in the read-only cache {cache} ({library.name} '
        f'has 100000 bytes, its build wrote {size}); set D2LRNN_CACHE_DIR to a directory '
        'you can write to\n')


def test_a_cache_you_cannot_make_says_so_in_one_line(shared, monkeypatch):
    cache, library, user = shared
    monkeypatch.setenv('D2LRNN_CACHE_DIR', str(cache / 'sub'))
    done = run_python(BUILD, as_user=user)
    assert done.stdout == (f'NativeBuildError: no cache directory: Permission denied: '
                           f'{cache}/sub; set D2LRNN_CACHE_DIR to a directory you can '
                           'write to\n')


# --- rule 6: one line, never an OSError ------------------------------------------------

def test_no_free_inodes_is_one_line(cache, fake_compiler, monkeypatch):
    use_compiler(monkeypatch, fake_compiler()[0])

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(cache / 'tmpx.so'))
    monkeypatch.setattr(tempfile, 'mkstemp', full)
    with pytest.raises(native.NativeBuildError,
                       match=exactly(f'No space left on device: {cache}/tmpx.so; set '
                                     'D2LRNN_CACHE_DIR to a directory you can write to')):
        native.build()


# --- the compiler ----------------------------------------------------------------------

def test_the_compilers_message_shows_the_cause(cache, tmp_path, monkeypatch):
    # a full disk, as ld reports it: the cause is not on collect2's "error:" line
    script = tmp_path / 'full-g++'
    script.write_text('#!/bin/sh\ncat >&2 <<EOF\n/usr/bin/ld: final link failed: No space '
                      'left on device\ncollect2: error: ld returned 1 exit status\nEOF\n'
                      'exit 1\n')
    script.chmod(0o755)
    use_compiler(monkeypatch, script)
    with pytest.raises(native.NativeBuildError,
                       match=exactly(f'{script} failed: /usr/bin/ld: final link failed: '
                                     'No space left on device')):
        native.build()
    # a compiler's own errors: the first two, not the notes around them
    script.write_text('#!/bin/sh\ncat >&2 <<EOF\nrnn_op.cc: In function f:\nrnn_op.cc:3:1: '
                      'error: one\nnote: here\nrnn_op.cc:4:1: error: two\nrnn_op.cc:5:1: '
                      'error: three\nEOF\nexit 1\n')
    with pytest.raises(native.NativeBuildError,
                       match=exactly(f'{script} failed: rnn_op.cc:3:1: error: one; '
                                     'rnn_op.cc:4:1: error: two')):
        native.build()


def test_cxx_may_hold_a_wrapper_and_its_arguments(cache, tmp_path, fake_compiler,
                                                  monkeypatch):
    script, log = fake_compiler(name='ccache')
    monkeypatch.setenv('CXX', f'{script} g++')
    assert native.build()[1]
    assert log.read_text().startswith('g++ -shared -fPIC')


@pytest.mark.parametrize('cxx, why', [('{tmp}', 'is not an executable file; set CXX to '
                                                'a C++ compiler'),
                                      ('{tmp}/none', 'not found; install g++ or set CXX')])
def test_a_cxx_that_is_not_a_compiler(cxx, why, cache, tmp_path, monkeypatch):
    cxx = cxx.format(tmp=tmp_path)
    monkeypatch.setenv('CXX', cxx)
    with pytest.raises(native.NativeBuildError, match=exactly(f'{cxx} {why}')):
        native.build()


@pytest.mark.parametrize('home', ['', None, 'relative', '/'])
def test_without_a_home_the_cache_is_never_in_the_root(home, monkeypatch):
    monkeypatch.delenv('D2LRNN_CACHE_DIR')
    monkeypatch.delenv('XDG_CACHE_HOME', raising=False)
    if home is None:
        monkeypatch.delenv('HOME', raising=False)
    else:
        monkeypatch.setenv('HOME', home)
    import pwd
    assert native.cache_dir() == Path(pwd.getpwuid(os.geteuid()).pw_dir, '.cache', 'd2lrnn')
    # and with no home in the password database either: no cache, one line
    monkeypatch.setattr(pwd, 'getpwuid', lambda uid: type('Entry', (), {'pw_dir': '/'}))
    with pytest.raises(native.NativeBuildError, match='^no cache directory: HOME is not '
                                                      'set .*; set D2LRNN_CACHE_DIR$'):
        native.cache_dir()


def test_a_relative_xdg_cache_home_is_ignored(monkeypatch, tmp_path):
    monkeypatch.delenv('D2LRNN_CACHE_DIR')
    monkeypatch.setenv('HOME', str(tmp_path))
    monkeypatch.setenv('XDG_CACHE_HOME', 'relative/cache')
    assert native.cache_dir() == tmp_path / '.cache' / 'd2lrnn'
