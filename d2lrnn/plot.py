"""The live training plot, Animator (book/07-training.ipynb).

A plot that grows while a model trains: live in a notebook, else silent."""
import io

from .checks import check_positive


def in_notebook():
    """True inside a Jupyter kernel, where a figure can be shown."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and 'IPKernelApp' in shell.config


class Animator:
    """Plot data points as they arrive (D2L 3.6).

    In a notebook the figure is shown once and then updated in place (an
    IPython display handle, so one figure remains in the cell's output). In a
    script, a test or CI nothing is shown or printed; the points are kept in
    ``X`` and ``Y`` and the figure in ``fig``, for example for
    ``animator.fig.savefig('ppl.png')``. ``display=False`` forces silence.
    """

    def __init__(self, xlabel=None, ylabel=None, legend=None, xlim=None,
                 ylim=None, xscale='linear', yscale='linear',
                 fmts=('-', 'm--', 'g-.', 'r:'), nrows=1, ncols=1,
                 figsize=(3.5, 2.5), display=None):
        check_positive(nrows=nrows, ncols=ncols)
        # A pyplot-free Figure: no GUI backend, and no second copy drawn by
        # the inline backend at the end of the cell.
        from matplotlib.figure import Figure
        self.fig = Figure(figsize=figsize, layout='tight')
        axes = self.fig.subplots(nrows, ncols, squeeze=False)
        self.axes = list(axes.ravel())
        self.labels = dict(xlabel=xlabel, ylabel=ylabel, xlim=xlim, ylim=ylim,
                           xscale=xscale, yscale=yscale)
        self.legend, self.fmts = legend, fmts
        self.X, self.Y = None, None
        self.display = in_notebook() if display is None else display
        self._handle = None

    def add(self, x, y):
        """Add a point per line: `y` a number or a list, `x` too or shared."""
        if not hasattr(y, '__len__'):
            y = [y]
        n = len(y)
        if not hasattr(x, '__len__'):
            x = [x] * n
        if self.X is None:
            self.X, self.Y = [[] for _ in range(n)], [[] for _ in range(n)]
        for i, (a, b) in enumerate(zip(x, y)):
            if a is not None and b is not None:
                self.X[i].append(a)
                self.Y[i].append(b)
        self.draw()
        if self.display:
            self._show()

    def draw(self):
        """Redraw the first axes from the stored points."""
        ax = self.axes[0]
        ax.cla()
        for x, y, fmt in zip(self.X, self.Y, self.fmts):
            ax.plot(x, y, fmt)
        labels = self.labels
        ax.set_xlabel(labels['xlabel'])
        ax.set_ylabel(labels['ylabel'])
        ax.set_xscale(labels['xscale'])
        ax.set_yscale(labels['yscale'])
        if labels['xlim']:
            ax.set_xlim(labels['xlim'])
        if labels['ylim']:
            ax.set_ylim(labels['ylim'])
        if self.legend:
            ax.legend(self.legend)
        ax.grid(True)

    def _show(self):
        from IPython.display import display
        if self._handle is None:
            self._handle = display(self._displayable(), display_id=True)
        else:
            self._handle.update(self._displayable())

    def _displayable(self):
        """The figure if IPython can draw it (%matplotlib inline), else PNG."""
        from IPython import get_ipython
        from IPython.display import Image
        # Without pyplot or %matplotlib inline no formatter knows a Figure,
        # and the cell would show only '<Figure size 350x250 with 1 Axes>'.
        formatters = get_ipython().display_formatter.formatters
        for mime in ('image/png', 'image/svg+xml'):
            try:
                formatters[mime].lookup(self.fig)
                return self.fig
            except KeyError:
                pass
        buf = io.BytesIO()
        self.fig.savefig(buf, format='png')
        return Image(buf.getvalue(), format='png')
