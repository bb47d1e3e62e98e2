"""MXNet on the Pythons book/index.md supports (3.11, 3.12).

What MXNet 1.9.1 needs to run on Python 3.12 with NumPy 1.26.

MXNet 1.9.1 is the last release of a retired project. It relies on two things
that were removed after it came out:

* NumPy's aliases of Python types: ``numpy.bool``, ``numpy.int``,
  ``numpy.float``, ``numpy.complex``, ``numpy.object`` and ``numpy.str``
  (deprecated in NumPy 1.20, removed in 1.24). MXNet reads them when it is
  imported and again at run time (boolean indexing, ``np.full`` with a
  boolean). :func:`restore_numpy_aliases` sets back those the installed NumPy
  no longer has, each to the Python type it stood for, as NumPy 1.23 did.
  With NumPy 1.23.5 (the pin on Python 3.11) it changes nothing.
* ``distutils``, gone from the standard library in Python 3.12. The package
  ``setuptools``, a run-time dependency on 3.12, provides it; nothing is
  done here.

The aliases must be in place before MXNet is imported. ``import d2lrnn`` does
it first of all. For a script or notebook that imports MXNet before d2lrnn,
the installed distribution carries a one-line ``d2lrnn-compat.pth`` at the
root of site-packages (setup.py writes it into the wheel, editable or not;
``python -I d2lrnn/_compat.py`` writes it by hand). At start-up Python then
loads this file (not the package, so neither MXNet nor NumPy is imported)
and registers a hook that restores the aliases when MXNet is first imported.

Only the standard library is imported here at import time, nothing of d2lrnn.
"""
import os
import sys
import sysconfig
import warnings

# The aliases NumPy 1.24 removed, each with the Python type it stood for.
ALIASES = {'bool': bool, 'int': int, 'float': float, 'complex': complex,
           'object': object, 'str': str}

PTH_NAME = 'd2lrnn-compat.pth'
# site.py executes a .pth line that starts with "import": find the package
# without importing it, load this file on its own and install the hook.
PTH_LINE = (
    "import importlib.util as u, os; s = u.find_spec('d2lrnn'); "
    "p = s and os.path.join(s.submodule_search_locations[0], '_compat.py'); "
    "f = p and os.path.isfile(p) and "
    "u.spec_from_file_location('_d2lrnn_startup', p); "
    "m = f and u.module_from_spec(f); f and f.loader.exec_module(m); "
    "m and m.install_import_hook()\n")


def restore_numpy_aliases(numpy_module=None):
    """Set back on NumPy the aliases in ``ALIASES`` that it lacks.

    Returns the names set (none with NumPy < 1.24). ``numpy_module`` defaults
    to ``numpy`` itself.
    """
    if numpy_module is None:
        import numpy as numpy_module
    restored = []
    with warnings.catch_warnings():
        # Asking is enough for a warning: NumPy < 1.24 serves the aliases
        # with a DeprecationWarning, 1.24 to 1.26 refuse some with a
        # FutureWarning (NumPy 2 gives bool, object and str other meanings).
        warnings.simplefilter('ignore')
        for name, value in ALIASES.items():
            if not hasattr(numpy_module, name):
                setattr(numpy_module, name, value)
                restored.append(name)
    return restored


class RestoreBeforeMXNet:
    """An import hook that finds nothing: the first time anything imports
    ``mxnet``, it restores NumPy's aliases and lets the import go on."""

    def __init__(self):
        self.done = False

    def find_spec(self, name, path=None, target=None):
        if name == 'mxnet' and not self.done:
            self.done = True  # first, since NumPy's import comes back here
            restore_numpy_aliases()
        return None  # the next finder on sys.meta_path finds mxnet


def install_import_hook():
    """Put a :class:`RestoreBeforeMXNet` first on ``sys.meta_path`` (once)."""
    names = {type(finder).__name__ for finder in sys.meta_path}
    if RestoreBeforeMXNet.__name__ not in names:
        sys.meta_path.insert(0, RestoreBeforeMXNet())


def install_startup_hook(site_packages=None):
    """Write ``PTH_NAME`` into ``site_packages`` (this interpreter's by
    default), unless it is there already; returns its path."""
    if site_packages is None:
        site_packages = sysconfig.get_path('purelib')
    path = os.path.join(site_packages, PTH_NAME)
    try:
        with open(path, encoding='utf-8') as file:
            if file.read() == PTH_LINE:
                return path
    except FileNotFoundError:
        pass
    # Renamed into place, so a Python starting meanwhile reads all or nothing.
    tmp = f'{path}.{os.getpid()}.tmp'
    with open(tmp, 'w', encoding='utf-8') as file:
        file.write(PTH_LINE)
    os.replace(tmp, path)
    return path


if __name__ == '__main__':
    # `python -I d2lrnn/_compat.py`: the hook by hand, into this interpreter's
    # site-packages (-I: the script's folder stays off sys.path).
    install_startup_hook()
elif __name__ == 'd2lrnn._compat':
    # Imported by d2lrnn/__init__.py, just before it imports MXNet.
    restore_numpy_aliases()
