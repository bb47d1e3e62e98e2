"""Importing d2lrnn, and plotting outside a notebook, print nothing at all; on
Python 3.12 MXNet works however it is imported (d2lrnn/_compat.py); try_gpu
falls back from a GPU that cannot run MXNet's kernels in one line."""
import os
import shutil
import subprocess
import sys
import sysconfig
import types
import zipfile
from pathlib import Path

import pytest

import mxnet as mx
from mxnet import npx
from mxnet.base import MXNetError

import d2lrnn
from d2lrnn import utils

ROOT = Path(__file__).resolve().parents[1]
# What building the distribution reads.
SOURCES = ['pyproject.toml', 'setup.py', 'README.md', 'LICENSE',
           'd2lrnn_launch.py', 'd2lrnn']


def run_quietly(code, *options):
    """Run `code` in a fresh Python (with `options`), with no display and no
    reachable network."""
    env = {k: v for k, v in os.environ.items() if k not in ('DISPLAY', 'MPLBACKEND')}
    # A proxy that refuses every connection: nothing may need the network.
    env.update(http_proxy='http://127.0.0.1:9', https_proxy='http://127.0.0.1:9',
               HTTP_PROXY='http://127.0.0.1:9', HTTPS_PROXY='http://127.0.0.1:9',
               no_proxy='', OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, *options, '-c', code], env=env,
                          capture_output=True, text=True, timeout=120)


def test_import_prints_nothing():
    result = run_quietly('import d2lrnn')
    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == ('', '')


def test_import_warns_of_nothing_even_with_warnings_shown_and_turns_on_numpy_mode():
    result = run_quietly('import warnings; warnings.simplefilter("default")\n'
                         'import d2lrnn\n'
                         'from mxnet import npx\n'
                         'assert npx.is_np_array(), "npx.set_np() was not called"\n')
    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == ('', '')


def test_animator_outside_a_notebook_prints_nothing_and_keeps_the_points():
    result = run_quietly(
        'import contextlib, io\n'
        'with contextlib.redirect_stderr(io.StringIO()):\n'
        '    import matplotlib.font_manager  # a first use may report building a font cache\n'
        'import d2lrnn\n'
        'a = d2lrnn.Animator(xlabel="epoch", legend=["train"], xlim=[1, 20])\n'
        'a.add(1, [3.0]); a.add(11, [2.0])\n'
        'assert not a.display and a.X == [[1, 11]] and a.Y == [[3.0, 2.0]], (a.X, a.Y)\n'
        'assert len(a.axes[0].lines) == 1\n')
    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == ('', '')


def test_animator_in_a_kernel_without_matplotlib_inline_shows_a_png(monkeypatch):
    import IPython
    from IPython.core.formatters import DisplayFormatter

    import d2lrnn
    shell = type('Shell', (), {'display_formatter': DisplayFormatter()})()
    monkeypatch.setattr(IPython, 'get_ipython', lambda: shell)
    animator = d2lrnn.Animator(display=False)
    animator.add(1, [2.0])
    shown = animator._displayable()  # no formatter knows a Figure here
    assert isinstance(shown, IPython.display.Image)
    assert shown.data.startswith(b'\x89PNG')


def test_compat_sets_back_only_the_aliases_numpy_lacks():
    from d2lrnn import _compat
    old_numpy = types.SimpleNamespace(**_compat.ALIASES)
    assert _compat.restore_numpy_aliases(old_numpy) == []
    new_numpy = types.SimpleNamespace(bool_=bool, float64=float)
    assert _compat.restore_numpy_aliases(new_numpy) == list(_compat.ALIASES)
    assert all(getattr(new_numpy, name) is value
               for name, value in _compat.ALIASES.items())


def test_compat_changes_numpy_only_where_it_lost_the_aliases():
    # NumPy 1.23 serves the aliases through its module __getattr__, so
    # vars(numpy) holds them only if the compatibility module set them.
    result = run_quietly(
        'import numpy\n'
        'import d2lrnn\n'
        'from d2lrnn._compat import ALIASES\n'
        'major, minor = map(int, numpy.__version__.split(".")[:2])\n'
        'set_back = [name for name in ALIASES if name in vars(numpy)]\n'
        'expected = list(ALIASES) if (major, minor) >= (1, 24) else []\n'
        'assert set_back == expected, (numpy.__version__, set_back)\n')
    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == ('', '')


def test_mxnet_imported_before_d2lrnn_works_through_the_startup_hook():
    # A reader's own cell may import MXNet first: the environment's .pth
    # hook (which the install ships) must have set the aliases back by then.
    result = run_quietly(
        'import sys\n'
        'from mxnet import np, npx\n'
        'npx.set_np()\n'
        'x = np.array([1.0, 2.0, 3.0])\n'
        'print(x[x > 1.5], np.full((2,), True))\n'
        'hooks = [f for f in sys.meta_path\n'
        '         if type(f).__name__ == "RestoreBeforeMXNet"]\n'
        'assert [h.done for h in hooks] == [True], "startup hook missing"\n')
    assert result.returncode == 0, result.stderr
    assert result.stdout == '[2. 3.] [ True  True]\n'


def test_d2l_reference_imports_so_its_comparisons_run():
    # On 3.12 d2l is installed without its dependencies: it must still work,
    # or test_model's comparison with it would be skipped.
    result = run_quietly('import d2l.mxnet as d2l\n'
                         'assert hasattr(d2l, "RNNScratch")\n')
    assert result.returncode == 0, result.stderr


# --- try_gpu: a GPU that MXNet reports must also run its kernels ---

# What MXNet 1.9.1's CUDA wheels (kernels for compute capability 5.0-8.6, no
# PTX) say on a Hopper GPU when the first kernel runs.
HOPPER = ('Traceback (most recent call last):\n'
          '  File "../src/engine/threaded_engine.cc", line 331\n'
          'MXNetError: Check failed: e == cudaSuccess || e == cudaErrorCudartUnloading: '
          'CUDA: no kernel image is available for execution on the device')


@pytest.fixture
def gpus(monkeypatch):
    """Pretend MXNet sees `n` GPUs; the devices are checked afresh."""
    def _pretend(n):
        monkeypatch.setattr(utils.npx, 'num_gpus', lambda: n)
    utils._working_gpu.cache_clear()
    yield _pretend
    utils._working_gpu.cache_clear()


def test_try_gpu_without_a_gpu_is_the_cpu_and_says_nothing(gpus, capsys):
    gpus(0)
    assert d2lrnn.try_gpu() == npx.cpu()
    assert capsys.readouterr() == ('', '')


def test_a_gpu_that_runs_is_kept(gpus, monkeypatch, capsys):
    gpus(2)
    ran = []
    monkeypatch.setattr(utils, '_run_one_operation', ran.append)
    assert d2lrnn.try_gpu(1) == npx.gpu(1)
    assert ran == [npx.gpu(1)]
    assert capsys.readouterr() == ('', '')


def test_a_gpu_without_kernels_falls_back_to_the_cpu_in_one_line(gpus, monkeypatch, capsys):
    gpus(1)

    def fail(ctx):
        raise MXNetError(HOPPER)

    monkeypatch.setattr(utils, '_run_one_operation', fail)
    monkeypatch.setattr(utils, '_gpu_name',
                        lambda i: 'NVIDIA H100 80GB HBM3, compute capability 9.0')
    assert d2lrnn.try_gpu() == npx.cpu()
    assert d2lrnn.try_gpu() == npx.cpu()  # checked once: no second line
    out, err = capsys.readouterr()
    assert out == ''
    assert err == ('d2lrnn: gpu(0) (NVIDIA H100 80GB HBM3, compute capability 9.0) '
                   'cannot run MXNet: MXNetError: Check failed: e == cudaSuccess || '
                   'e == cudaErrorCudartUnloading: CUDA: no kernel image is available '
                   'for execution on the device; using the CPU instead.\n')


def test_the_operation_really_runs_on_the_gpu(gpus, capsys):
    # Nothing mocked but the count: MXNet built without CUDA fails the
    # operation, one built with it runs it on gpu(0).
    gpus(1)
    cuda = mx.runtime.Features().is_enabled('CUDA')
    assert d2lrnn.try_gpu() == (npx.gpu(0) if cuda else npx.cpu())
    err = capsys.readouterr().err
    assert err == '' if cuda else (err.count('\n') == 1 and err.startswith('d2lrnn: gpu(0)')
                                   and err.endswith('; using the CPU instead.\n'))


@pytest.mark.parametrize('i', [-1, 0.0, '0', None])
def test_try_gpu_refuses_an_index_that_is_not_a_count(i):
    with pytest.raises(ValueError, match=f'i must be an integer >= 0, got {i!r}'):
        d2lrnn.try_gpu(i)


def test_the_gpu_is_named_by_nvidia_smi_as_cuda_numbers_it(monkeypatch):
    asked = []

    def nvidia_smi(cmd, **kwargs):
        asked.append(cmd[1])
        return subprocess.CompletedProcess(cmd, 0, stdout='NVIDIA H100 80GB HBM3, 9.0\n')

    monkeypatch.setattr(utils.subprocess, 'run', nvidia_smi)
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '3,GPU-5e1f')
    assert utils._gpu_name(1) == 'NVIDIA H100 80GB HBM3, compute capability 9.0'
    monkeypatch.delenv('CUDA_VISIBLE_DEVICES')
    utils._gpu_name(1)
    assert asked == ['--id=GPU-5e1f', '--id=1']

    def missing(cmd, **kwargs):
        raise FileNotFoundError(cmd[0])

    monkeypatch.setattr(utils.subprocess, 'run', missing)
    assert utils._gpu_name(0) == ''



def build_wheel(tmp_path):
    """The project's wheel, built with this environment's setuptools from a
    copy of the sources (pip builds in the source folder and would leave
    build/ there)."""
    src = tmp_path / 'src'
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name,
                            ignore=shutil.ignore_patterns('__pycache__'))
        else:
            shutil.copy(ROOT / name, src / name)
    result = subprocess.run(
        [sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation',
         '--disable-pip-version-check', '--wheel-dir', str(tmp_path / 'wheels'),
         str(src)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    [wheel] = (tmp_path / 'wheels').glob('d2lrnn-*.whl')
    return wheel


@pytest.mark.slow
def test_the_wheel_carries_the_startup_hook_and_a_plain_install_uses_it(tmp_path):
    from d2lrnn import _compat
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        # At the root: site-packages, where Python's start-up reads .pth files.
        assert archive.read(_compat.PTH_NAME).decode() == _compat.PTH_LINE
    target = tmp_path / 'site'
    subprocess.run([sys.executable, '-m', 'pip', 'install', '--quiet', '--no-deps',
                    '--no-index', '--disable-pip-version-check',
                    '--target', str(target), str(wheel)], check=True, timeout=300)
    # -S: no site-packages yet; -I: nor the current folder (this project's
    # d2lrnn). The installed folder is read as start-up reads site-packages:
    # its hook must be in place at once. Then this environment's folder, for
    # MXNet (its own hook finds one in place and adds none), which is the
    # first import.
    result = run_quietly(
        'import site, sys\n'
        'def hooks():\n'
        '    return [f for f in sys.meta_path\n'
        '            if type(f).__name__ == "RestoreBeforeMXNet"]\n'
        f'site.addsitedir({str(target)!r})\n'
        'print(type(hooks()[0]).find_spec.__code__.co_filename)\n'
        f'site.addsitedir({sysconfig.get_path("purelib")!r})\n'
        'from mxnet import np, npx\n'
        'npx.set_np()\n'
        'x = np.array([1.0, 2.0, 3.0])\n'
        'print(x[x > 1.5])\n'
        'assert [h.done for h in hooks()] == [True], hooks()\n'
        'assert "d2lrnn" not in sys.modules\n', '-I', '-S')
    assert result.returncode == 0, result.stderr
    assert result.stdout == f'{target / "d2lrnn" / "_compat.py"}\n[2. 3.]\n'
