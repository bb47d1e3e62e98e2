"""The native RNN operators of ``csrc/rnn_op.cc``: built, cached, loaded.

``FastRNNScratch`` calls ``load()`` when it is first built; it compiles
``csrc/rnn_op.cc`` with MXNet's extension API (``lib_api.h`` and
``lib_api.cc``, shipped in the ``mxnet`` wheel) and OpenBLAS (the
``scipy-openblas32`` wheel) into a per-user cache, then loads it with
``mx.library.load``, after which ``mx.nd.d2lrnn_rnn_forward`` and
``mx.nd.d2lrnn_rnn_backward`` exist. Nothing is downloaded and nothing is
built at import or at install. The cache is ``$D2LRNN_CACHE_DIR``, else
``$XDG_CACHE_HOME/d2lrnn``, else ``~/.cache/d2lrnn``; a library's name
holds a hash of the source, MXNet's and OpenBLAS's versions, the compiler,
its flags and the CPU (``-march=native``), so any change rebuilds. A file
lock (``fcntl.flock``) makes a second process wait for the first one's
build and then load it. ``$CXX`` names the compiler (default ``g++``).
``d2lrnn build-native`` builds ahead of time.
"""
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SOURCE = Path(__file__).with_name('csrc') / 'rnn_op.cc'
FLAGS = ('-shared', '-fPIC', '-std=c++17', '-O3', '-march=native')
OPS = ('d2lrnn_rnn_forward', 'd2lrnn_rnn_backward')


class NativeBuildError(RuntimeError):
    """The native operators could not be built or loaded; says why."""


_loaded = None   # path of the library loaded in this process
_failure = None  # why the build failed in this process (str)


def cache_dir():
    """Where built libraries are kept, per user (see the module doc)."""
    if os.environ.get('D2LRNN_CACHE_DIR'):
        return Path(os.environ['D2LRNN_CACHE_DIR'])
    base = os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache'
    return Path(base) / 'd2lrnn'


def compiler():
    """The C++ compiler to build with: ``$CXX``, else ``g++``."""
    return os.environ.get('CXX') or 'g++'


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


def _cpu_model():
    """The CPU's model name, part of the key because of -march=native."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return 'unknown'


def command(output):
    """The compiler's command line that builds the library at `output`."""
    _, lib_dir, _ = _openblas()
    mx = _mxnet_dir()
    return [compiler(), *FLAGS, str(SOURCE), str(mx / 'src' / 'lib_api.cc'),
            f'-I{mx / "include"}', f'-L{lib_dir}', '-lscipy_openblas',
            f'-Wl,-rpath,{lib_dir}', '-o', str(output)]


def library_path():
    """The cached library's path for this source, MXNet, BLAS and CPU."""
    import mxnet
    _, lib_dir, blas_version = _openblas()
    key = hashlib.sha256()
    key.update(SOURCE.read_bytes())
    key.update((_mxnet_dir() / 'src' / 'lib_api.cc').read_bytes())
    for part in (mxnet.__version__, blas_version, lib_dir, compiler(),
                 ' '.join(FLAGS), _cpu_model()):
        key.update(b'\0' + str(part).encode())
    return cache_dir() / f'rnn_op-{key.hexdigest()[:16]}.so'


def _compile(output):
    """Run the compiler into `output`; raise NativeBuildError with why."""
    cmd = command(output)
    if shutil.which(cmd[0]) is None:
        raise NativeBuildError(f'{cmd[0]} not found; install g++ or set CXX')
    try:
        done = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as err:
        raise NativeBuildError(f'{cmd[0]} could not run: {err}') from err
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        why = next((ln for ln in lines if 'error' in ln), lines[-1]
                   if lines else f'exit status {done.returncode}')
        raise NativeBuildError(f'{cmd[0]} failed: {why.strip()}')


def build():
    """The library's path, compiled first unless the cache has it.

    Returns (path, compiled). Holds a lock on ``<path>.lock`` while it
    looks and compiles, so a concurrent build waits and then finds the
    library. Raises NativeBuildError saying why it could not build.
    """
    try:
        path = library_path()
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise NativeBuildError(f'no cache directory: {err}') from err
    with open(path.with_suffix('.lock'), 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if path.exists():
            return path, False
        # compile beside it, then rename: a reader never sees half a file
        fd, tmp = tempfile.mkstemp(suffix='.so', dir=path.parent)
        os.close(fd)
        try:
            _compile(tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
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
