"""The code a reader sees runs as shown.

For every notebook of the book, exercises included, the code cells a reader
sees run in order in a fresh kernel, without the hidden ones (tagged
``remove-cell``, or ``remove-input``: those show only their output). No cell
may raise, and each visible cell must print what the page shows, compared
as nbval compares (images aside, after tests/sanitize.cfg; cells tagged
``nbval-ignore-output`` depend on the processor and are not compared).
"""
import os
import re
from pathlib import Path

import nbformat
import pytest
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbval.kernel import CURRENT_ENV_KERNEL_NAME, NbvalKernelspecManager
from nbval.plugin import coalesce_streams, get_sanitize_patterns

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / 'book'
NOTEBOOKS = sorted(BOOK.glob('*.ipynb')) + sorted(BOOK.glob('exercises/*.ipynb'))
SANITIZE = ROOT / 'tests' / 'sanitize.cfg'
HIDDEN_TAGS = {'remove-cell', 'remove-input'}
UNCOMPARED_TAG = 'nbval-ignore-output'
# As nbval: pictures are not compared, only what is text.
UNCOMPARED_DATA = {'image/png', 'image/jpeg'}
# Pages whose visible code trains for many minutes: their `num_epochs` is
# lowered to this, and only "no cell raises" is checked there.
SHORTENED = {'07-training.ipynb': 10}
# A top-level assignment: `num_epochs = 500`, `num_epochs, lr = 500, 1`.
NUM_EPOCHS = re.compile(r'^\(?num_epochs\b[^=\n]*=[^=]', re.MULTILINE)
# The environment nbval's kernels get from dev.sh.
KERNEL_ENV = {'OMP_NUM_THREADS': '1', 'MPLBACKEND': 'Agg'}
CELL_TIMEOUT = 1800  # seconds, as dev.sh gives nbval
INDEX = 'd2lrnn_index'  # a visible cell's index in the whole notebook


def is_visible(cell):
    """A code cell whose source the page shows."""
    tags = set(cell.metadata.get('tags', []))
    return cell.cell_type == 'code' and not tags & HIDDEN_TAGS


def visible_notebook(nb, num_epochs=None):
    """`nb` reduced to its visible code cells, each with its index in `nb`
    as metadata; with `num_epochs` set right after the first cell that
    assigns it, when given."""
    nb = nbformat.from_dict(nb)  # a copy
    cells = []
    for index, cell in enumerate(nb.cells):
        if not is_visible(cell):
            continue
        cell.metadata[INDEX] = index
        cells.append(cell)
        if num_epochs is not None and NUM_EPOCHS.search(cell.source):
            cells.append(nbformat.v4.new_code_cell(f'num_epochs = {num_epochs}'))
            num_epochs = None
    if num_epochs is not None:
        raise ValueError('no visible cell assigns num_epochs; update SHORTENED '
                         'in tests/test_visible_code.py')
    nb.cells = cells
    return nb


def sanitize(text, patterns):
    for regex, replacement in patterns:
        text = re.sub(regex, replacement, text)
    return text


def comparable(outputs, patterns):
    """What nbval compares of a cell's outputs: streams merged by name,
    then every representation but pictures, each sanitized."""
    shown = []
    for output in coalesce_streams([nbformat.from_dict(o) for o in outputs]):
        if output.output_type == 'stream':
            shown.append((output.name, sanitize(output.text, patterns)))
        elif output.output_type == 'error':
            shown.append(('error', output.ename))
        else:
            # sorted: a kernel sends text/plain first, a saved notebook
            # stores its keys in alphabetical order
            shown.extend((mime, sanitize(value, patterns))
                         for mime, value in sorted(output.get('data', {}).items())
                         if mime not in UNCOMPARED_DATA)
    return shown


def execute(nb, folder):
    """Run `nb` in a fresh kernel of this environment, as nbval does, in
    `folder`; a failing cell stops it (CellExecutionError)."""
    manager = KernelManager(kernel_name=CURRENT_ENV_KERNEL_NAME,
                            kernel_spec_manager=NbvalKernelspecManager())
    client = NotebookClient(nb, km=manager, timeout=CELL_TIMEOUT,
                            resources={'metadata': {'path': str(folder)}})
    # cleanup_kc: shut the kernel down at the end, though the client was
    # given its manager
    client.execute(cleanup_kc=True, env={**os.environ, **KERNEL_ENV})


def first_error(nb):
    """'cell N raised Name: message' and the cell's first lines, for the
    first cell of `nb` whose outputs hold an error."""
    for cell in nb.cells:
        for output in cell.get('outputs', []):
            if output.output_type == 'error':
                head = '\n    '.join(cell.source.splitlines()[:3])
                return (f'cell {cell.metadata.get(INDEX, "(added)")} raised '
                        f'{output.ename}: {output.evalue}\n    {head}')
    return 'a cell failed without an error output'


def run_visible_cells(nb, folder, num_epochs=None):
    """What goes wrong when the visible cells of `nb` run alone in `folder`:
    the first error, else each visible cell that prints other than its stored
    output (not compared when `num_epochs` is lowered). [] when all is well."""
    run = visible_notebook(nb, num_epochs)
    stored = {cell.metadata[INDEX]: cell.outputs
              for cell in run.cells if INDEX in cell.metadata}
    for cell in run.cells:
        cell.outputs = []
    try:
        execute(run, folder)
    except CellExecutionError:
        return [first_error(run)]
    if num_epochs is not None:
        return []  # fewer epochs, other numbers: only "it runs" is checked
    patterns = get_sanitize_patterns(SANITIZE.read_text())
    problems = []
    for cell in run.cells:
        index = cell.metadata.get(INDEX)
        if index is None or UNCOMPARED_TAG in cell.metadata.get('tags', []):
            continue
        shown = comparable(stored[index], patterns)
        printed = comparable(cell.outputs, patterns)
        if printed != shown:
            problems.append(f'cell {index} shows {shown!r}\n  but printed {printed!r}')
    return problems


@pytest.mark.slow
@pytest.mark.parametrize('path', NOTEBOOKS, ids=lambda p: str(p.relative_to(BOOK)))
def test_visible_cells_run_as_shown(path):
    problems = run_visible_cells(nbformat.read(path, as_version=4), path.parent,
                                 SHORTENED.get(path.name))
    assert not problems, (f'{path.relative_to(ROOT)}: ' + '\n'.join(problems))


# The checker itself, on small notebooks.

def code_cell(source, printed=None, tags=()):
    cell = nbformat.v4.new_code_cell(source, metadata={'tags': list(tags)})
    if printed is not None:
        cell.outputs = [nbformat.v4.new_output('stream', name='stdout', text=printed)]
    return cell


def notebook(*cells):
    return nbformat.v4.new_notebook(cells=list(cells))


def test_hidden_cells_are_left_out_and_num_epochs_is_lowered_after_its_assignment():
    nb = notebook(code_cell('glue()', tags=['remove-cell']),
                  code_cell('show()', tags=['remove-input']),
                  nbformat.v4.new_markdown_cell('text'),
                  code_cell('num_epochs, lr = 500, 1', tags=['hide-input']),
                  code_cell('train(num_epochs)', tags=['nbval-ignore-output']))
    run = visible_notebook(nb, num_epochs=10)
    assert [c.source for c in run.cells] == ['num_epochs, lr = 500, 1',
                                             'num_epochs = 10', 'train(num_epochs)']
    assert [c.metadata.get(INDEX) for c in run.cells] == [3, None, 4]
    assert len(nb.cells) == 5  # the notebook read is left as it was


def test_a_page_that_no_longer_assigns_num_epochs_is_reported():
    with pytest.raises(ValueError, match='no visible cell assigns num_epochs'):
        visible_notebook(notebook(code_cell('epochs = 500')), num_epochs=10)


@pytest.mark.slow
def test_a_name_made_in_a_hidden_cell_is_reported_with_the_cell(tmp_path):
    nb = notebook(code_cell('full = 1', tags=['remove-cell']),
                  code_cell('x = 2'),
                  code_cell('print(full)', printed='1\n'))
    [problem] = run_visible_cells(nb, tmp_path)
    assert problem.startswith("cell 2 raised NameError: name 'full' is not defined")
    assert problem.endswith('print(full)')


@pytest.mark.slow
def test_outputs_are_compared_after_sanitizing_except_where_nbval_ignores_them(tmp_path):
    nb = notebook(code_cell('print("123 tokens/sec on cpu(0)")',
                            printed='4567.8 tokens/sec on cpu(0)\n'),
                  code_cell('print(3)', printed='4\n'),
                  code_cell('import os; print(os.getcwd())', printed=f'{tmp_path}\n'),
                  code_cell('print(5)', printed='6\n', tags=['nbval-ignore-output']))
    problems = run_visible_cells(nb, tmp_path)
    assert problems == ["cell 1 shows [('stdout', '4\\n')]\n"
                        "  but printed [('stdout', '3\\n')]"]


def test_a_rich_output_compares_alike_whatever_the_order_of_its_types():
    # a kernel sends text/plain first; a saved notebook stores keys sorted
    sent = nbformat.v4.new_output('display_data', data={'text/plain': '<Markdown>',
                                                        'text/markdown': '| a |'})
    saved = nbformat.v4.new_output('display_data', data={'text/markdown': '| a |',
                                                         'text/plain': '<Markdown>'})
    assert comparable([sent], []) == comparable([saved], [])
    changed = nbformat.v4.new_output('display_data', data={'text/markdown': '| b |',
                                                           'text/plain': '<Markdown>'})
    assert comparable([changed], []) != comparable([saved], [])
