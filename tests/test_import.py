"""Importing d2lrnn, and plotting outside a notebook, print nothing at all."""
import os
import subprocess
import sys


def run_quietly(code):
    """Run `code` in a fresh Python with no display and no reachable network."""
    env = {k: v for k, v in os.environ.items() if k not in ('DISPLAY', 'MPLBACKEND')}
    # A proxy that refuses every connection: nothing may need the network.
    env.update(http_proxy='http://127.0.0.1:9', https_proxy='http://127.0.0.1:9',
               HTTP_PROXY='http://127.0.0.1:9', HTTPS_PROXY='http://127.0.0.1:9',
               no_proxy='', OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, '-c', code], env=env, capture_output=True,
                          text=True, timeout=120)


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
