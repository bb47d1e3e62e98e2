"""Native operators of FastRNNScratch (book/performance.ipynb).

The native RNN operators of ``csrc/rnn_op.cc``: built, cached, loaded.

``FastRNNScratch`` calls ``load()`` when it is first built; it compiles
``csrc/rnn_op.cc`` with MXNet's extension API (``lib_api.h`` and
``lib_api.cc``, shipped in the ``mxnet`` wheel) and OpenBLAS (the
``scipy-openblas32`` wheel) into a per-user cache, then loads it with
``mx.library.load``, after which ``mx.nd.d2lrnn_rnn_forward`` and
``mx.nd.d2lrnn_rnn_backward`` exist. Nothing is downloaded and nothing is
built at import or at install. A library's name holds a hash of the
source, MXNet's and OpenBLAS's versions, the compiler, its flags and the
CPU (``-march=native``), so any change rebuilds. ``$CXX`` names the
compiler (default ``g++``), split into words as a shell would
(``CXX='ccache g++'``). ``d2lrnn build-native`` builds ahead of time.

The cache's rules, so that no library another user could have written is
ever loaded and a damaged cache never crashes a program:

1. **Where.** ``$D2LRNN_CACHE_DIR``, else ``$XDG_CACHE_HOME/d2lrnn`` when
   that is an absolute path (a relative one is ignored, as the XDG spec
   says), else ``~/.cache/d2lrnn`` with ``~`` from ``$HOME``, or from the
   password database when ``$HOME`` is empty, unset, relative or ``/``
   (never ``/.cache``; no home at all: no cache, the Python path).
   Directories it creates are private (mode 0700).
2. **Whose.** The cache directory must be owned by you (or root) and not
   writable by group or others; every directory above it must be owned by
   you or root and writable by others only with the sticky bit (as
   ``/tmp``). Else nothing in it is loaded or written. A cache reached
   through a symlink is checked, and then used, at its real path.
3. **Verified before loading.** The library must be a regular file (never
   a symlink, FIFO or device: looked at with ``lstat``, opened with
   ``O_NOFOLLOW | O_NONBLOCK`` and checked with ``fstat``), owned by you
   or root, not writable by group or others, and its size and SHA-256
   must match the record ``<library>.sha256`` that its build wrote.
   Anything else (a truncated or foreign file, no record) is rebuilt.
4. **Built means loads.** A build compiles into a temporary file in the
   cache, loads it in a short subprocess (so a broken ``$CXX`` or a bogus
   library never counts as built), renames it into place and then writes
   the record, each atomically. A failed build removes its temporary
   files; those of a killed build are removed by the next build (its own
   key's at once, others' after ``STALE_SECONDS``).
5. **Locks.** ``<library>.lock`` serialises builds (``fcntl.flock``): a
   second process waits for the first one's build and then loads it. It
   is opened with ``O_NOFOLLOW`` and must be a regular file, so a planted
   symlink never truncates anything. It is taken only when a build is
   needed: a verified library is loaded without writing to the cache, so
   a read-only shared cache (owned by root, say) works.
6. **One line.** Every failure (no compiler, an unsafe or read-only or
   full cache, a failed compilation, a library that does not load) is a
   ``NativeBuildError`` of one line that says why, never an ``OSError``;
   ``load()`` prints it once on stderr and takes the Python path.

The check and the ``dlopen`` name the same path: safe because, by rule 2,
only you or root can change what that path holds.
"""
import contextlib
import fcntl
import hashlib
import os
import pwd
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .results import cpu_model  # part of the key because of -march=native

SOURCE = Path(__file__).with_name('csrc') / 'rnn_op.cc'
FLAGS = ('-shared', '-fPIC', '-std=c++17', '-O3', '-march=native')
OPS = ('d2lrnn_rnn_forward', 'd2lrnn_rnn_backward')
RECORD = '.sha256'       # suffix of the record a build writes beside the .so
STALE_SECONDS = 3600     # another key's temporary file older than this is dead
COMPILE_TIMEOUT = 1800   # seconds for one compilation
LOAD_TIMEOUT = 300       # seconds for the subprocess that loads a fresh build
MAX_ERROR_LINES = 2      # compiler lines quoted in an error
# the subprocess that checks a fresh build loads and defines the operators
LOAD_CHECK = ('import sys, mxnet; '
              'mxnet.library.load(sys.argv[1], verbose=False); '
              '[getattr(mxnet.nd, op) for op in sys.argv[2:]]')


class NativeBuildError(RuntimeError):
    """The native operators could not be built or loaded; says why."""


_loaded = None   # path of the library loaded in this process
_failure = None  # why the build failed in this process (str)


def cache_dir():
    """Where built libraries are kept, per user (rule 1 of the module doc)."""
    if os.environ.get('D2LRNN_CACHE_DIR'):
        return Path(os.path.abspath(os.environ['D2LRNN_CACHE_DIR']))
    xdg = os.environ.get('XDG_CACHE_HOME', '')
    if os.path.isabs(xdg):
        return Path(xdg) / 'd2lrnn'
    home = _home()
    if home is None:
        raise NativeBuildError(
            'no cache directory: HOME is not set and the password database '
            'has no home for this user; set D2LRNN_CACHE_DIR')
    return home / '.cache' / 'd2lrnn'


def _home():
    """$HOME if absolute, else the password database's home; or None."""
    home = os.environ.get('HOME', '')
    if os.path.isabs(home) and home != '/':
        return Path(home)
    try:
        home = pwd.getpwuid(os.geteuid()).pw_dir
    except KeyError:
        return None
    return Path(home) if os.path.isabs(home) and home != '/' else None


def compiler():
    """The C++ compiler to build with: ``$CXX``, else ``g++``."""
    return os.environ.get('CXX', '').strip() or 'g++'


def _compiler_words():
    """``$CXX`` split as a shell splits it, e.g. ['ccache', 'g++']."""
    try:
        return shlex.split(compiler())
    except ValueError as err:
        raise NativeBuildError(
            f'CXX={compiler()!r} cannot be split into words ({err})') from err


def _openblas():
    """(include dir, lib dir, version) of the scipy-openblas32 wheel."""
    try:
        import scipy_openblas32 as blas
    except ImportError as err:
        raise NativeBuildError(
            'scipy-openblas32 is not installed; pip install '
            'scipy-openblas32') from err
    return blas.get_include_dir(), blas.get_lib_dir(), blas.__version__


def _mxnet_dir():
    """The installed mxnet package, which ships lib_api.h and .cc."""
    import mxnet
    return Path(mxnet.__file__).parent


def command(output):
    """The compiler's command line that builds the library at `output`."""
    _, lib_dir, _ = _openblas()
    mx = _mxnet_dir()
    return [*_compiler_words(), *FLAGS, str(SOURCE),
            str(mx / 'src' / 'lib_api.cc'), f'-I{mx / "include"}',
            f'-L{lib_dir}', '-lscipy_openblas', f'-Wl,-rpath,{lib_dir}',
            '-o', str(output)]


def library_path():
    """The cached library's path for this source, MXNet, BLAS and CPU."""
    import mxnet
    _, lib_dir, blas_version = _openblas()
    key = hashlib.sha256()
    key.update(SOURCE.read_bytes())
    key.update((_mxnet_dir() / 'src' / 'lib_api.cc').read_bytes())
    for part in (mxnet.__version__, blas_version, lib_dir, compiler(),
                 ' '.join(FLAGS), cpu_model()):
        key.update(b'\0' + str(part).encode())
    return cache_dir() / f'rnn_op-{key.hexdigest()[:16]}.so'


# --- trust: who may have written a directory or a file (rule 2) ---------

def _trusted_owner(st):
    """True if you or root own the file `st` describes."""
    return st.st_uid in (os.geteuid(), 0)


def _owner_problem(st, what):
    """Why `what` (a cache directory or file) is not trusted, or None."""
    if not _trusted_owner(st):
        return (f'{what} is owned by uid {st.st_uid}, not by you '
                f'(uid {os.geteuid()}) or root')
    if st.st_mode & 0o022:
        return (f'{what} is writable by group or others '
                f'(mode {stat.S_IMODE(st.st_mode):o})')
    return None


def _check_directory(directory):
    """`directory` without symlinks, if it and those above it are safe.

    Else raise NativeBuildError. The caller goes on with the path
    returned: a symlink on the way (which another user might own and turn
    elsewhere) is followed once, here.
    """
    real = Path(os.path.realpath(directory))
    st = os.lstat(real)
    if not stat.S_ISDIR(st.st_mode):
        raise NativeBuildError(f'the cache {real} is not a directory')
    why = _owner_problem(st, f'the cache directory {real}')
    if why:
        raise NativeBuildError(
            f'{why}; refusing to load from it: set D2LRNN_CACHE_DIR to a '
            'directory of your own')
    _check_folders_above(real.parents, f'above the cache {real}')
    return real


def _check_folders_above(folders, where):
    """Raise NativeBuildError unless each of `folders` is yours or root's
    and closed to others (a sticky folder, like /tmp, may be open)."""
    for folder in folders:
        st = os.lstat(folder)
        open_to_others = st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX
        if not _trusted_owner(st) or open_to_others:
            raise NativeBuildError(
                f'{folder}, {where}, could be changed by another user; '
                'refusing to use it: set D2LRNN_CACHE_DIR to a directory of '
                'your own')


def _make_directory(directory):
    """Create `directory` and any missing parent, each private (0700), only
    below a folder that passes ``_check_folders_above``: nothing is made in
    another user's home, or through a symlink they could turn elsewhere."""
    missing = []
    while not os.path.lexists(directory):
        missing.append(directory.name)
        directory = directory.parent
    if not missing:
        return
    base = Path(os.path.realpath(directory))
    _check_folders_above([base, *base.parents], 'where the cache would be made')
    for name in reversed(missing):
        base = base / name
        try:
            os.mkdir(base, 0o700)
        except FileExistsError:  # made by a concurrent process meanwhile
            pass


# --- verification: a library is the one its build recorded (rule 3) -----

def _regular_stat(path):
    """lstat of `path` if it is a regular file you or root may trust.

    Returns (stat, None), or (None, why not).
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None, f'{path.name} is not built'
    if not stat.S_ISREG(st.st_mode):
        return None, f'{path} is not a regular file'
    why = _owner_problem(st, str(path))
    return (None, why) if why else (st, None)


def _open_regular(path, st):
    """A read-only fd of `path`, still the file `st` describes, or None.

    O_NOFOLLOW: never a symlink; O_NONBLOCK: a FIFO put there since the
    lstat cannot block the open.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
                 | os.O_CLOEXEC)
    now = os.fstat(fd)
    if (stat.S_ISREG(now.st_mode) and now.st_ino == st.st_ino
            and now.st_dev == st.st_dev):
        return fd
    os.close(fd)
    return None


def _digest_fd(fd):
    """(SHA-256 hex digest, size in bytes) of what `fd` reads."""
    digest, size = hashlib.sha256(), 0
    while chunk := os.read(fd, 1 << 20):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def _read_record(path):
    """(digest, size) that the build of `path` recorded, or None."""
    record = path.with_name(path.name + RECORD)
    st, _ = _regular_stat(record)
    fd = None if st is None else _open_regular(record, st)
    if fd is None:
        return None
    try:
        words = os.read(fd, 200).decode('ascii', 'replace').split()
    finally:
        os.close(fd)
    if (len(words) == 2 and re.fullmatch('[0-9a-f]{64}', words[0])
            and words[1].isdigit()):
        return words[0], int(words[1])
    return None


def _unverified(path):
    """Why the library at `path` may not be loaded, or None if it may."""
    st, why = _regular_stat(path)
    if why:
        return why
    expected = _read_record(path)
    if expected is None:
        return f'{path.name} has no record of its build'
    if st.st_size != expected[1]:
        return (f'{path.name} has {st.st_size} bytes, its build wrote '
                f'{expected[1]}')
    fd = _open_regular(path, st)
    if fd is None:
        return f'{path} changed while it was checked'
    try:
        actual = _digest_fd(fd)
    finally:
        os.close(fd)
    if actual != expected:
        return f'{path.name} does not match the hash its build recorded'
    return None


# --- building (rules 4 and 5) -------------------------------------------

@contextlib.contextmanager
def _build_lock(path):
    """Hold an exclusive lock on ``<path>.lock`` (a regular file only)."""
    lock = path.with_suffix('.lock')
    try:
        st = os.lstat(lock)
        if not stat.S_ISREG(st.st_mode):
            raise NativeBuildError(
                f'the lock {lock} is not a regular file; remove it')
    except FileNotFoundError:
        pass
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW
                     | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
    except OSError as err:
        raise NativeBuildError(
            f'cannot open the lock {lock} ({err.strerror}); set '
            'D2LRNN_CACHE_DIR to a directory you can write to') from err
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NativeBuildError(
                f'the lock {lock} is not a regular file; remove it')
        fcntl.flock(fd, fcntl.LOCK_EX)  # released when the fd closes
        yield
    finally:
        os.close(fd)


def _remove_stale(path):
    """Remove temporary files that killed builds left in the cache.

    Called with `path`'s lock held: its own key's are dead at once;
    other keys' (and the ``tmp*.so`` of earlier versions) once they are
    older than STALE_SECONDS.
    """
    now, own, names = time.time(), f'{path.stem}.build-', []
    with contextlib.suppress(OSError):
        names = os.listdir(path.parent)
    for name in names:
        if not (re.fullmatch(r'rnn_op-\w+\.build-\w+(\.so|\.sha256)', name)
                or re.fullmatch(r'tmp\w+\.so', name)):
            continue
        with contextlib.suppress(OSError):
            st = os.lstat(path.parent / name)
            dead = name.startswith(own) or now - st.st_mtime > STALE_SECONDS
            if st.st_uid == os.geteuid() and dead:
                os.unlink(path.parent / name)


def _temporary(path, suffix):
    """A new empty file beside `path`, named so _remove_stale finds it."""
    fd, tmp = tempfile.mkstemp(prefix=f'{path.stem}.build-', suffix=suffix,
                               dir=path.parent)
    os.close(fd)
    return Path(tmp)


def _find_compiler(program):
    """Raise NativeBuildError unless `program` can run."""
    if os.sep in program:
        if not os.path.exists(program):
            raise NativeBuildError(
                f'{program} not found; install g++ or set CXX')
        if not (os.path.isfile(program) and os.access(program, os.X_OK)):
            raise NativeBuildError(
                f'{program} is not an executable file; set CXX to a C++ '
                'compiler')
    elif shutil.which(program) is None:
        raise NativeBuildError(f'{program} not found; install g++ or set CXX')


def _compiler_cause(stderr, returncode):
    """The lines of the compiler's output that say why it failed."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    # collect2's "error: ld returned 1 exit status" only says that ld
    # failed: the cause is on ld's own lines ("No space left on device")
    own = [ln for ln in lines if not ln.startswith('collect2:')]
    causes = ([ln for ln in own if re.search(r'\berror\b', ln, re.I)]
              or own or lines[-1:] or [f'exit status {returncode}'])
    return '; '.join(causes[:MAX_ERROR_LINES])


def _compile(output):
    """Run the compiler into `output`; raise NativeBuildError with why."""
    cmd = command(output)
    if not cmd[:1]:
        raise NativeBuildError('CXX is empty; set it to a C++ compiler')
    _find_compiler(cmd[0])
    try:
        done = subprocess.run(cmd, capture_output=True, text=True,
                              errors='replace', timeout=COMPILE_TIMEOUT)
    except subprocess.TimeoutExpired as err:
        raise NativeBuildError(
            f'{cmd[0]} did not finish in {COMPILE_TIMEOUT} s') from err
    except OSError as err:
        raise NativeBuildError(f'{cmd[0]} could not run: {err}') from err
    if done.returncode != 0:
        why = _compiler_cause(done.stderr or done.stdout, done.returncode)
        raise NativeBuildError(f'{cmd[0]} failed: {why}')


def _check_loads(library):
    """Raise NativeBuildError unless `library` loads in a fresh process."""
    try:
        done = subprocess.run(
            [sys.executable, '-c', LOAD_CHECK, str(library), *OPS],
            capture_output=True, text=True, errors='replace',
            timeout=LOAD_TIMEOUT)
    except subprocess.TimeoutExpired as err:
        raise NativeBuildError(
            f'the built library did not load within {LOAD_TIMEOUT} s') from err
    except OSError as err:
        raise NativeBuildError(
            f'cannot start {sys.executable!r} to check that the built '
            f'library loads: {err.strerror}') from err
    if done.returncode == 0:
        return
    if done.returncode < 0:
        why = f'killed by {signal.Signals(-done.returncode).name}'
    else:
        lines = [ln.strip() for ln in done.stderr.splitlines() if ln.strip()]
        why = lines[-1] if lines else f'exit status {done.returncode}'
        why = why.replace(f'{library}: ', '')  # a temporary name says nothing
    raise NativeBuildError(
        f'the library {compiler()} built does not load ({why})')


def _digest_file(path):
    """(SHA-256 hex digest, size) of the file at `path`."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        return _digest_fd(fd)
    finally:
        os.close(fd)


def _write_record(path, digest, size):
    """Write ``<path>.sha256`` atomically: the library's digest and size."""
    tmp = _temporary(path, RECORD)
    try:
        tmp.write_text(f'{digest} {size}\n')
        os.chmod(tmp, 0o644)
        os.replace(tmp, path.with_name(path.name + RECORD))
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _refuse_directory(path):
    """Raise NativeBuildError if `path` is a directory (a rename cannot
    replace it; any other file there, a FIFO say, it replaces)."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISDIR(os.lstat(path).st_mode):
            raise NativeBuildError(f'{path} is a directory; remove it')


def _build_at(path):
    """Compile into a temporary file, check it loads, move it to `path`."""
    _refuse_directory(path)
    tmp = _temporary(path, '.so')
    try:
        _compile(tmp)
        os.chmod(tmp, 0o755)  # as the linker made it, minus any group write
        _check_loads(tmp)
        digest, size = _digest_file(tmp)
        os.replace(tmp, path)
        _write_record(path, digest, size)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _cache_ready(directory):
    """Make the cache directory if missing; return it checked, as a path
    without symlinks (see _check_directory)."""
    try:
        _make_directory(directory)
    except OSError as err:
        raise NativeBuildError(
            f'no cache directory: {err.strerror}: {err.filename}; set '
            'D2LRNN_CACHE_DIR to a directory you can write to') from err
    return _check_directory(directory)


def build():
    """The library's path, compiled first unless the cache has it.

    Returns (path, compiled). A verified library is returned without
    writing to the cache; else, under a lock on ``<path>.lock``, the
    library is (re)built, so a concurrent build waits and then finds it.
    Raises NativeBuildError (one line) saying why it could not build;
    never an OSError.
    """
    try:
        return _build()
    except OSError as err:
        where = f': {err.filename}' if err.filename else ''
        raise NativeBuildError(
            f'{err.strerror or err}{where}; set D2LRNN_CACHE_DIR to a '
            'directory you can write to') from err


def _build():
    """build() itself; OSError may escape."""
    path = library_path()
    path = _cache_ready(path.parent) / path.name
    why = _unverified(path)
    if why is None:
        return path, False
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise NativeBuildError(
            f'cannot rebuild in the read-only cache {path.parent} ({why}); '
            'set D2LRNN_CACHE_DIR to a directory you can write to')
    with _build_lock(path):
        if _unverified(path) is None:  # built meanwhile by another process
            return path, False
        _remove_stale(path)
        _build_at(path)
    return path, True


def load(required=False):
    """Build if needed and load the operators; True if they are there.

    On failure: with `required`, raise NativeBuildError; else print one
    line on stderr saying why (once per process) and return False, so the
    caller takes the Python path.
    """
    global _loaded, _failure
    if _loaded is None and _failure is None:
        try:
            path, _ = build()
            import mxnet
            mxnet.library.load(str(path), verbose=False)
            _loaded = path
        except (NativeBuildError, OSError, mxnet_error()) as err:
            _failure = str(err).strip().splitlines()[-1]
            if not required:
                print(f'd2lrnn: the native operator could not be built '
                      f'({_failure}); using the Python path',
                      file=sys.stderr)
    if _loaded is None and required:
        raise NativeBuildError(
            f'the native operator could not be built ({_failure}); use '
            'native=None or native=False for the Python path')
    return _loaded is not None


def mxnet_error():
    """MXNet's error class (a failed ``library.load`` raises it)."""
    from mxnet.base import MXNetError
    return MXNetError
