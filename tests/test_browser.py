"""The built book in a real browser: math typeset, plots shown, code listed, nothing fetched
from other hosts.

The HTML in _build/html (from `bash dev.sh book`) is served on 127.0.0.1 and opened in
headless Chromium. Chromium writes the DOM after scripts (MathJax) have run, and a network
log of every request; the server records what it was asked for. Outside hosts are made
unresolvable, so the test behaves the same with or without a network, and any request the
page makes to them is an error, even one that would have failed anyway.
"""
import functools
import html.parser
import http.server
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import urllib.parse
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / '_build' / 'html'
SHOTS = ROOT / '_build' / 'browser'
LOCAL_HOSTS = {'127.0.0.1', 'localhost'}

# Every page of the book that the table of contents lists (exercise pages come and go).
PAGES = ['book/index', 'book/01-data', 'book/02-one-hot', 'book/03-parameters', 'book/04-model',
         'book/05-prediction', 'book/06-gradient-clipping', 'book/07-training',
         'book/08-summary', 'book/09-exercises', 'book/performance', 'book/api']


def chromium():
    for name in ('chromium', 'chromium-browser', 'google-chrome'):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail('Chromium is not installed: run `bash .ci/install-browser` '
                '(or `sudo apt-get install chromium`).')


@pytest.fixture(scope='module')
def site():
    if not (SITE / 'index.html').is_file():
        pytest.fail(f'{SITE / "index.html"} is missing: build the book first with `bash dev.sh book`.')
    return SITE


class _Handler(http.server.SimpleHTTPRequestHandler):
    served = None  # set per server: a list of (path, status, size)

    def log_message(self, *args):
        pass

    def log_request(self, code='-', size='-'):
        path = urllib.parse.urlsplit(self.path).path
        self.served.append((path, int(code) if str(code).isdigit() else code))


def _serve(root):
    served = []
    handler = type('Handler', (_Handler,), {'served': served})
    server = http.server.ThreadingHTTPServer(
        ('127.0.0.1', 0), functools.partial(handler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, served


@pytest.fixture(scope='module')
def server(site):
    server, served = _serve(site)
    yield f'http://127.0.0.1:{server.server_address[1]}', served
    server.shutdown()
    server.server_close()


def run_chromium(url, screenshot=None, timeout=120):
    """Load `url`; return (DOM after scripts ran, list of (url, isolation key) requested)."""
    with tempfile.TemporaryDirectory() as tmp:
        netlog = Path(tmp) / 'net.json'
        args = [chromium(), '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
                '--no-first-run', '--disable-background-networking',
                '--disable-component-update', '--disable-sync', '--disable-extensions',
                f'--user-data-dir={tmp}/profile',
                # Nothing but this machine resolves: the book must not need the network.
                '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
                f'--log-net-log={netlog}', '--virtual-time-budget=15000']
        if screenshot:
            args += [f'--screenshot={screenshot}', '--window-size=1280,1600', '--hide-scrollbars']
        else:
            args += ['--dump-dom']
        proc = subprocess.run(args + [url], capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            pytest.fail(f'chromium exited with {proc.returncode} on {url}:\n{proc.stderr[-2000:]}')
        return proc.stdout, _requests(netlog)


def _requests(netlog):
    """(url, network isolation key) of every request that started, from Chromium's net log."""
    try:
        log = json.loads(netlog.read_text())
    except (OSError, ValueError):
        # A log cut off at exit lacks its closing brackets.
        text = netlog.read_text().rstrip().rstrip(',')
        log = json.loads(text + ']}')
    start = log['constants']['logEventTypes']['URL_REQUEST_START_JOB']
    return [(e['params']['url'], e['params'].get('network_isolation_key', ''))
            for e in log['events'] if e['type'] == start and 'url' in e.get('params', {})]


def page_requests(requests):
    """The requests a page made (its site is 127.0.0.1), as opposed to the browser's own."""
    return [url for url, key in requests if '127.0.0.1' in key or 'localhost' in key]


def outside(urls):
    return [u for u in urls if urllib.parse.urlsplit(u).scheme in ('http', 'https', 'ws', 'wss')
            and urllib.parse.urlsplit(u).hostname not in LOCAL_HOSTS]


class DomReader(html.parser.HTMLParser):
    """Visible text (outside script, style and MathJax output), tags, and resource links."""

    SKIP = {'script', 'style', 'mjx-container', 'template', 'noscript'}
    # <link rel=...> values that do not make the browser fetch anything.
    INERT_LINKS = {'canonical', 'alternate', 'next', 'prev', 'index', 'search', 'author',
                   'license', 'help', 'top', 'up', 'first', 'last', 'contents', 'start'}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.text, self.tags, self.resources, self.images = [], [], [], []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag in self.SKIP:
            self._skip += 1
        if tag == 'img':
            self.images.append(attrs.get('src') or '')
        if tag in ('script', 'img', 'iframe', 'source', 'audio', 'video', 'embed', 'object'):
            ref = attrs.get('src') or attrs.get('data')
            if ref:
                self.resources.append(ref)
        if tag == 'link' and attrs.get('href'):
            rels = set((attrs.get('rel') or '').lower().split())
            if not rels or not rels <= self.INERT_LINKS:
                self.resources.append(attrs['href'])

    def handle_endtag(self, tag):
        if tag in self.SKIP and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.text.append(data)


def read_dom(dom):
    reader = DomReader()
    reader.feed(dom)
    reader.full_text = ' '.join(''.join(reader.text).split())
    return reader


@functools.lru_cache(maxsize=None)
def _load(base, page):
    return run_chromium(f'{base}/{page}.html')


@pytest.fixture(scope='module')
def load(server):
    base, served = server

    def get(page):
        dom, requests = _load(base, page)
        return read_dom(dom), requests, served
    return get


# --- the pages themselves ---------------------------------------------------------------

def test_math_is_typeset(load):
    dom, _, _ = load('book/06-gradient-clipping')
    containers = [a for t, a in dom.tags if t == 'mjx-container']
    displayed = [a for a in containers if a.get('display') == 'true']
    assert len(displayed) >= 2, f'MathJax typeset {len(displayed)} displayed equations, expected the two'
    assert len(containers) >= 10, f'only {len(containers)} formulas typeset'
    for raw in ('$$', '\\theta', '\\mathbf', '\\leq', '\\|'):
        assert raw not in dom.full_text, f'untypeset TeX {raw!r} left on the page'


def test_math_on_the_model_pages(load):
    for page in ('book/02-one-hot', 'book/03-parameters', 'book/04-model'):
        dom, _, _ = load(page)
        assert any(t == 'mjx-container' for t, _ in dom.tags), f'no typeset math on {page}'
        assert '\\mathbf' not in dom.full_text and '$$' not in dom.full_text, page


def _image_ok(src, page, served):
    if src.startswith('data:image/'):
        head, _, payload = src.partition(',')
        return len(payload) > 100
    path = urllib.parse.urljoin(f'/{page}.html', src)
    file = SITE / urllib.parse.unquote(path).lstrip('/')
    return (file.is_file() and file.stat().st_size > 0
            and (path, 200) in served)


def test_perplexity_plots_are_images(load):
    page = 'book/07-training'
    dom, _, served = load(page)
    plots = [src for src in dom.images if '_images/' in src or src.startswith('data:image/')]
    # Two live training curves and the figure with both.
    assert len(plots) >= 3, f'expected the perplexity plots as images, found {plots}'
    bad = [src for src in plots if not _image_ok(src, page, served)]
    assert not bad, f'images missing, empty or not served: {bad}'


@pytest.mark.parametrize('page, listing', [
    ('book/01-data', 'def seq_data_iter_sequential('),
    ('book/03-parameters', 'def get_params('),
    ('book/04-model', 'def rnn('),
    ('book/04-model', 'class RNNModelScratch'),
    ('book/05-prediction', 'def predict_ch8('),
    ('book/06-gradient-clipping', 'def grad_clipping('),
    ('book/07-training', 'def train_epoch_ch8('),
    ('book/07-training', 'def train_ch8('),
])
def test_code_listings(load, page, listing):
    dom, _, _ = load(page)
    assert listing in dom.full_text, f'{listing!r} is not shown on {page}'


def test_results_are_on_the_pages(load):
    dom, _, _ = load('book/04-model')
    assert '((1120, 28), 1, (32, 512))' in dom.full_text
    dom, _, _ = load('book/07-training')
    assert re.search(r'Perplexity \d+\.\d, \d+ tokens/sec on (cpu|gpu)\(\d\)', dom.full_text)
    assert 'sequential partitioning ends lower than random sampling' in dom.full_text


# --- offline ---------------------------------------------------------------------------

@pytest.mark.parametrize('page', PAGES)
def test_page_loads_only_from_localhost(load, page):
    if not (SITE / f'{page}.html').is_file():
        pytest.fail(f'{page}.html was not built: run `bash dev.sh book`.')
    dom, requests, served = load(page)
    external_refs = outside(dom.resources)
    assert not external_refs, f'{page} refers to other hosts: {external_refs}'
    made = page_requests(requests)
    assert any(u.endswith(f'/{page}.html') for u in made), f'{page} was not requested: {made[:5]}'
    external = outside(made)
    assert not external, f'{page} made requests to other hosts: {external}'
    missing = sorted({p for p, status in served if status == 404 and not p.endswith('favicon.ico')})
    assert not missing, f'files the pages asked for but the build lacks: {missing}'


def test_no_page_names_another_host_for_a_resource(site):
    """Static check of every built page, including those no browser test opens."""
    offenders = {}
    for file in site.rglob('*.html'):
        rel = file.relative_to(site).as_posix()
        if rel.startswith('_static/'):
            continue
        dom = read_dom(file.read_text(encoding='utf-8', errors='replace'))
        bad = outside(dom.resources)
        # Inline scripts that would fetch from a CDN (sphinx-thebe's unpkg.com loader).
        bad += re.findall(r'https?://(?:unpkg\.com|cdn\.jsdelivr\.net|cdnjs\.cloudflare\.com)[^"\'\s]*',
                          file.read_text(encoding='utf-8', errors='replace'))
        if bad:
            offenders[rel] = sorted(set(bad))
    assert not offenders, f'pages naming resources on other hosts: {offenders}'


def test_the_network_check_catches_a_request(tmp_path):
    """The detector itself: a page that loads a script from a CDN must be caught."""
    (tmp_path / 'bad.html').write_text(
        '<html><head><script src="https://unpkg.com/nothing@1/x.js"></script></head>'
        '<body><img src="https://example.org/a.png"><p>hello</p></body></html>')
    server, _ = _serve(tmp_path)
    try:
        dom, requests = run_chromium(f'http://127.0.0.1:{server.server_address[1]}/bad.html')
    finally:
        server.shutdown()
        server.server_close()
    assert outside(read_dom(dom).resources)
    caught = outside(page_requests(requests))
    assert any('unpkg.com' in u for u in caught), caught


def test_screenshot(server):
    """A picture of the training page, for a person to look at: _build/browser/07-training.png."""
    base, _ = server
    SHOTS.mkdir(parents=True, exist_ok=True)
    shot = SHOTS / '07-training.png'
    if shot.exists():
        shot.unlink()
    run_chromium(f'{base}/book/07-training.html', screenshot=shot)
    assert shot.is_file() and shot.stat().st_size > 10_000
    from matplotlib.image import imread
    pixels = imread(shot)[..., :3]
    inked = (pixels.min(axis=2) < 0.9).mean()
    assert inked > 0.01, f'the screenshot is blank ({inked:.1%} of its pixels are not white)'
