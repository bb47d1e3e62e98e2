"""The one build step pyproject.toml cannot say: ship the start-up hook.

MXNet 1.9.1 needs NumPy's removed aliases before it is imported (see
d2lrnn/_compat.py). The hook is a one-line ``d2lrnn-compat.pth`` that must sit
at the root of site-packages, beside the package, so that a plain
``pip install .`` (or ``pip install -e .``) of the project makes
``from mxnet import np, npx`` work as the first line of a script on Python
3.12. Everything else about the build is in pyproject.toml.
"""
import importlib.util
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

COMPAT = Path(__file__).resolve().parent / 'd2lrnn' / '_compat.py'


def load_compat():
    """d2lrnn/_compat.py on its own: the package's __init__ imports MXNet."""
    spec = importlib.util.spec_from_file_location('_d2lrnn_compat', COMPAT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildPyWithHook(build_py):
    """build_py that also writes the start-up hook at the wheel's root."""

    def run(self):
        super().run()
        compat = load_compat()
        for folder in self.hook_folders():
            Path(folder).mkdir(parents=True, exist_ok=True)
            compat.install_startup_hook(folder)

    def hook_folders(self):
        """Where the hook goes: the build folder a wheel is made from; in an
        editable install, whose build folder is thrown away, also the
        unpacked editable wheel, which is the install command's target."""
        folders = [self.build_lib]
        if getattr(self, 'editable_mode', False):
            folders.append(self.get_finalized_command('install').install_lib)
        return folders

    def get_outputs(self, include_bytecode=True):
        name = load_compat().PTH_NAME
        return [*super().get_outputs(include_bytecode),
                str(Path(self.build_lib, name))]


setup(cmdclass={'build_py': BuildPyWithHook})
