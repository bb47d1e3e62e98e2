"""The built book in a real browser: math typeset, plots shown, code listed, nothing cut,
no test machinery on a page, nothing fetched from other hosts.

The HTML in _build/html (from `bash dev.sh book`; another build with D2LRNN_SITE=path) is
served on 127.0.0.1 and opened in headless Chromium, one launch per page: a small harness
page, served by the test itself, opens the page in two frames, 1280 and 800 px wide, waits
until MathJax has typeset it, measures every code block, output and displayed equation,
and writes what it found, with the page's DOM after scripts, into its own DOM, which
Chromium dumps. Chromium also writes a network log of every request; the server records
what it was asked for. Outside hosts are made unresolvable, so the test behaves the same
with or without a network, and any request the page makes to them is an error, even one
that would have failed anyway.
"""
import functools
import html
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
import yaml

ROOT = Path(__file__).resolve().parents[1]
SITE = Path(os.environ.get('D2LRNN_SITE') or ROOT / '_build' / 'html').resolve()
SHOTS = ROOT / '_build' / 'browser'
LOCAL_HOSTS = {'127.0.0.1', 'localhost'}
# Window widths a reader uses: a laptop with both sidebars, and a narrow window without.
WIDTHS = (1280, 800)


def toc_pages(toc=ROOT / '_toc.yml'):
    """Every page the table of contents lists, in its order, without file suffixes."""
    data = yaml.safe_load(toc.read_text(encoding='utf-8'))
    pages = []

    def add(name):
        for suffix in ('.ipynb', '.md', '.rst'):
            name = name.removesuffix(suffix)
        pages.append(name)

    def walk(entries):
        for entry in entries or []:
            if 'file' in entry:
                add(entry['file'])
            walk(entry.get('sections'))
            for part in entry.get('parts') or []:
                walk(part.get('chapters'))

    add(data['root'])
    walk(data.get('chapters'))
    for part in data.get('parts') or []:
        walk(part.get('chapters'))
    return pages


# Every page of the book, the exercise pages included.
PAGES = toc_pages()


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


# --- the harness page that measures a page at each width -------------------------------

HARNESS = '/__layout__/'  # the server answers /__layout__/<page>.html with the harness for <page>

# Runs in the harness: opens the page in one frame per width (a frame's width is the
# page's window width: the theme's media queries and scripts see it), waits for MathJax
# and the fonts, opens every <details>, then lists each code block, output, displayed
# equation or other scroll box wider than its box, and any page-wide horizontal scroll.
MEASURE_JS = r"""
const PAGE = %(page)s, WIDTHS = %(widths)s;
const clean = t => (t || '').replace(/\s+/g, ' ').trim().slice(0, 60);
const fits = el => el.scrollWidth <= el.clientWidth + 1;

function texOf(win) {
  // The TeX source of each typeset formula, by its output element.
  const tex = new Map();
  const doc = win.MathJax && win.MathJax.startup && win.MathJax.startup.document;
  for (const item of (doc && doc.math) || [])
    if (item.typesetRoot) tex.set(item.typesetRoot, item.math);
  return tex;
}

function offenders(win, width) {
  const doc = win.document, tex = texOf(win), found = [], flagged = [];
  const math = el => tex.get(el.matches('mjx-container') ? el : el.querySelector('mjx-container'));
  const add = (kind, el, text, widest) => {
    flagged.push(el);
    found.push({width, kind, text: clean(text), widest: widest || null,
                overflow: el.scrollWidth - el.clientWidth});
  };
  for (const el of doc.querySelectorAll('pre')) {
    if (fits(el)) continue;
    const lines = el.textContent.split('\n');
    const long = lines.reduce((a, b) => (b.length > a.length ? b : a), '');
    add('pre', el, el.textContent, {chars: long.length, line: clean(long)});
  }
  for (const el of doc.querySelectorAll('mjx-container[display="true"]'))
    if (!fits(el)) add('display math', el, math(el) || el.textContent);
  for (const el of doc.querySelectorAll('div.math'))
    if (!fits(el)) add('.math', el, math(el) || el.textContent);
  // Inline formulas clip what overflows them; MathJax's hidden copy for screen readers
  // (mjx-assistive-mml) is often wider than the formula, so measure the formula itself.
  for (const el of doc.querySelectorAll('span.math')) {
    const shown = el.querySelector('mjx-math');
    if (shown && shown.getBoundingClientRect().width > el.clientWidth + 1)
      add('inline math', el, math(el));
  }
  // Any other box of the article that scrolls or clips sideways (tables, outputs).
  for (const el of doc.querySelectorAll('.bd-article *')) {
    if (fits(el) || el.matches('span.math') || el.closest('mjx-container')
        || flagged.some(f => el.contains(f) || f.contains(el))) continue;
    const overflow = win.getComputedStyle(el).overflowX;
    if (overflow === 'visible') continue;
    const classes = [...el.classList].slice(0, 2).map(c => '.' + c).join('');
    const name = el.tagName.toLowerCase() + classes;
    add('scroll box ' + name, el, el.textContent);
  }
  const root = doc.scrollingElement;
  if (root.scrollWidth > root.clientWidth + 1)
    found.push({width, kind: 'page', text: 'the whole page scrolls sideways',
                overflow: root.scrollWidth - root.clientWidth});
  return found;
}

function open(width) {
  return new Promise((resolve, reject) => {
    const frame = document.createElement('iframe');
    frame.style.width = width + 'px';
    frame.onload = () => resolve(frame.contentWindow);
    frame.onerror = reject;
    frame.src = PAGE;
    document.body.appendChild(frame);
  });
}

async function settle(win) {
  const startup = win.MathJax && win.MathJax.startup;
  if (startup && startup.promise) await startup.promise;
  await win.document.fonts.ready;
  for (const d of win.document.querySelectorAll('details')) d.open = true;
}

(async () => {
  const report = {page: PAGE, measured: [], offenders: [], dom: null};
  try {
    const wins = await Promise.all(WIDTHS.map(open));
    for (const [i, win] of wins.entries()) {
      await settle(win);
      report.offenders.push(...offenders(win, WIDTHS[i]));
      report.measured.push(WIDTHS[i]);
    }
    report.dom = wins[0].document.documentElement.outerHTML;
  } catch (e) {
    report.error = String((e && e.stack) || e);
  }
  document.getElementById('layout-report').textContent = JSON.stringify(report);
})();
"""


def harness(page):
    """The harness HTML that measures `page` (a path below the site root, without .html)."""
    script = MEASURE_JS % {'page': json.dumps(f'/{page}.html'), 'widths': json.dumps(WIDTHS)}
    return ('<!DOCTYPE html><html><head><meta charset="utf-8"><title>layout</title>'
            '<style>body{margin:0} iframe{display:block;border:0;height:900px}</style>'
            '</head><body><pre id="layout-report"></pre>'
            f'<script>{script}</script></body></html>')


def layout_report(dump):
    """The harness's report (a dict) from the DOM Chromium dumped."""
    match = re.search(r'<pre id="layout-report">(.*?)</pre>', dump, re.S)
    if not match or not match.group(1).strip():
        pytest.fail('the layout harness wrote no report: the page did not finish loading '
                    'and typesetting within the virtual time budget')
    report = json.loads(html.unescape(match.group(1)))
    if report.get('error'):
        pytest.fail(f'the layout harness failed on {report["page"]}: {report["error"]}')
    return report


class _Handler(http.server.SimpleHTTPRequestHandler):
    served = None  # set per server: a list of (path, status)

    def log_message(self, *args):
        pass

    def log_request(self, code='-', size='-'):
        path = urllib.parse.urlsplit(self.path).path
        self.served.append((path, int(code) if str(code).isdigit() else code))

    def do_GET(self):
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        if not (path.startswith(HARNESS) and path.endswith('.html')):
            return super().do_GET()
        body = harness(path[len(HARNESS):-len('.html')]).encode()
        self.send_response(200)
        self.send_header('Content-Type', 'text/html; charset=utf-8')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)


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


def run_chromium(url, screenshot=None, window=None, timeout=120):
    """Load `url`; return (DOM after scripts ran, list of (url, isolation key) requested)."""
    with tempfile.TemporaryDirectory() as tmp:
        netlog = Path(tmp) / 'net.json'
        args = [chromium(), '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
                '--no-first-run', '--disable-background-networking',
                '--disable-component-update', '--disable-sync', '--disable-extensions',
                # Chromium's own form-metadata queries, which it makes for pages in frames.
                '--disable-features=AutofillServerCommunication',
                f'--user-data-dir={tmp}/profile',
                # Nothing but this machine resolves: the book must not need the network.
                '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
                f'--log-net-log={netlog}', '--virtual-time-budget=15000']
        if screenshot:
            width, height = window or (1280, 1600)
            args += [f'--screenshot={screenshot}', f'--window-size={width},{height}',
                     '--hide-scrollbars']
        else:
            if window:
                args += ['--window-size={},{}'.format(*window)]
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
    """Open `page` through the harness: (its DOM after scripts, requests, layout offenders)."""
    # Tall enough for both frames (900 px each) to be on screen.
    dump, requests = run_chromium(f'{base}{HARNESS}{page}.html',
                                  window=(max(WIDTHS) + 20, 900 * len(WIDTHS) + 100))
    report = layout_report(dump)
    if report['measured'] != list(WIDTHS):
        pytest.fail(f'{page} was measured at {report["measured"]} px only')
    return report['dom'], requests, report['offenders']


@pytest.fixture(scope='module')
def load(server):
    base, served = server

    def get(page):
        dom, requests, _ = _load(base, page)
        return read_dom(dom), requests, served
    return get


@pytest.fixture(scope='module')
def offenders(server):
    base, _ = server
    return lambda page: _load(base, page)[2]


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
    # The watched samples, the baselines and the scores on unseen text.
    assert re.search(r"epoch\s+train\s+valid\s+what follows 'time traveller'",
                     dom.full_text)
    assert re.search(r'counts, order 3 +\d+\.\d\d', dom.full_text)
    assert re.search(r'sequential +\d+\.\d +\d+\.\d', dom.full_text)


# --- nothing cut, no machinery ----------------------------------------------------------

def _describe(page, found):
    lines = []
    for o in found:
        line = (f'  {page} at {o["width"]} px, {o["kind"]} ({o["overflow"]} px too wide): '
                f'{o["text"]!r}')
        if o.get('widest'):
            widest = o['widest']
            line += f'\n      longest line, {widest["chars"]} characters: {widest["line"]!r}'
        lines.append(line)
    return '\n'.join(lines)


@pytest.mark.parametrize('page', PAGES)
def test_nothing_is_cut(offenders, page):
    """At each width, every code block, output and displayed equation fits its column."""
    if not (SITE / f'{page}.html').is_file():
        pytest.fail(f'{page}.html was not built: run `bash dev.sh book`.')
    found = offenders(page)
    assert not found, (f'{len(found)} element(s) of {page} need a horizontal scroll '
                       f'or are cut:\n{_describe(page, found)}')


class CellReader(html.parser.HTMLParser):
    """The visible text of a page, and the text of its code cells' inputs."""

    SKIP = {'script', 'style', 'template', 'noscript'}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.text, self.inputs = [], []
        self._skip, self._divs, self._input_at = 0, 0, None

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self._skip += 1
        if tag == 'div':
            self._divs += 1
            classes = (dict(attrs).get('class') or '').split()
            if 'cell_input' in classes and self._input_at is None:
                self._input_at = self._divs
                self.inputs.append([])

    def handle_endtag(self, tag):
        if tag in self.SKIP and self._skip:
            self._skip -= 1
        if tag == 'div':
            if self._input_at == self._divs:
                self._input_at = None
            self._divs -= 1

    def handle_data(self, data):
        if self._skip:
            return
        self.text.append(data)
        if self._input_at is not None:
            self.inputs[-1].append(data)


@pytest.mark.parametrize('page', PAGES)
def test_no_test_machinery_on_the_page(site, page):
    """glue calls, nbval markers and asserts run in cells removed from the page."""
    file = site / f'{page}.html'
    if not file.is_file():
        pytest.fail(f'{page}.html was not built: run `bash dev.sh book`.')
    reader = CellReader()
    reader.feed(file.read_text(encoding='utf-8'))
    text = ''.join(reader.text)
    found = [f'{word!r} in: {" ".join(line.split())[:80]!r}'
             for line in text.splitlines() for word in ('glue(', 'NBVAL') if word in line]
    for cell in reader.inputs:
        found += [f'assert in a code cell: {" ".join(line.split())[:80]!r}'
                  for line in ''.join(cell).splitlines() if re.search(r'\bassert\s', line)]
    assert not found, f'{page} shows test machinery ({len(found)} lines):\n  ' + '\n  '.join(found)


@pytest.mark.parametrize('page', PAGES)
def test_every_page_credits_the_original_and_states_the_licences(site, page):
    """The original (D2L, CC BY-SA 4.0) is credited on each page, and the footer
    names both licences, so that no page reads as all rights reserved."""
    file = site / f'{page}.html'
    if not file.is_file():
        pytest.fail(f'{page}.html was not built: run `bash dev.sh book`.')
    html = file.read_text(encoding='utf-8')
    body, _, footer = html.partition('class="extra_footer"')
    assert 'Dive into Deep Learning' in body, f'{page} does not credit the original'
    assert 'CC BY-SA 4.0' in footer and 'MIT' in footer, f'{page}: footer without licences'


def test_the_layout_check_catches_a_cut_line(tmp_path):
    """The measurer itself: each kind of cut or scrolled element must be reported."""
    long = 'x = ' + '1 + ' * 60 + '1'
    wide = 'W' * 200
    (tmp_path / 'wide.html').write_text(
        '<html><head><style>pre, .math, .box {overflow-x: auto} p, td {white-space: nowrap}'
        ' mjx-container {display: block; overflow-x: auto} mjx-math {display: inline-block}'
        ' span.math {display: inline-flex; overflow: hidden; max-width: 5em}</style></head>'
        '<body><article class="bd-article" style="width: 400px">'
        f'<pre>{long}</pre><div class="cell_output"><pre>short</pre></div>'
        f'<div class="math"><mjx-container display="true"><mjx-math>{wide}</mjx-math>'
        f'</mjx-container></div><div class="math">{wide}</div>'
        f'<div><span class="math"><mjx-container><mjx-math>{wide}</mjx-math></mjx-container>'
        f'</span></div><div class="box"><table><tr><td>{wide}</td></tr></table></div>'
        f'<p>{"words " * 300}</p></article></body></html>')
    server, _ = _serve(tmp_path)
    try:
        dump, _ = run_chromium(f'http://127.0.0.1:{server.server_address[1]}{HARNESS}wide.html',
                               window=(max(WIDTHS) + 20, 900 * len(WIDTHS) + 100))
    finally:
        server.shutdown()
        server.server_close()
    found = layout_report(dump)['offenders']
    kinds = sorted((o['width'], o['kind']) for o in found)
    expected = ('pre', 'display math', '.math', 'inline math', 'scroll box div.box', 'page')
    assert kinds == sorted((w, k) for w in WIDTHS for k in expected), found
    pre = next(o for o in found if o['kind'] == 'pre')
    assert pre['widest']['chars'] == len(long) and pre['text'] == long[:60]


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
