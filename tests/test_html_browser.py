"""Sanitised HTML as an agent's browser renders it: headless Chromium (Debian's package) loads a page of hostile
vectors through ingest.sanitize, every request answered by a server on 127.0.0.1 that records it. No script may
run and nothing may be requested but the page; links and images the browser parses may carry only allowed
schemes; and a newsletter keeps its background colour band and its border dividers (computed styles).

A trusted harness script after the sanitised content writes what the browser computed into the DOM, which
`--dump-dom` prints once the virtual time budget is spent.
"""
from __future__ import annotations

import html
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading

import pytest

from ingest.sanitize import sanitize_html

CHROMIUM = shutil.which('chromium') or ('/usr/bin/chromium' if os.path.exists('/usr/bin/chromium') else None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason='no Chromium installed (Debian package chromium)')
BROWSER_TIMEOUT = 90          # seconds for one Chromium run, then its process group is killed
FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync',
         '--disable-default-apps', '--disable-extensions', '--virtual-time-budget=5000', '--dump-dom']

# `{u}` is a URL on the recording server, unique per vector; a script that runs requests it.
_SCHEME_TRICKS = ['&#1;{s}:', '&#31;{s}:', ' {s}:', '&#9;{s}:', '{a}&#9;{b}:', '{a}&#10;{b}:', '{a}&#13;{b}:',
                  '{s}&#9;:', '{s}&#10;:', '{s}&#13;:', '&#x0;{s}:', '{e}:', '{s}&colon;', '{s}&#58;', '{U}:']
_PAYLOADS = {'javascript': "fetch('{u}')", 'vbscript': 'msgbox(1)',
             'data': 'text/html,<script>fetch(\'{u}\')</script>'}
_STYLE_LOADS = ['url({u})', 'url("{u}")', 'u\\72l({u})', 'expression(fetch("{u}"))', 'image-set(url({u}) 1x)',
                '#fff url({u}) no-repeat', 'red;background-image:url({u})', '1px solid url({u})']
_STYLE_PROPERTIES = ['background', 'background-color', 'border', 'border-top', 'border-top-color', 'border-left-style',
                     'border-bottom-width', 'border-image', 'color', 'font-family', 'list-style-type', 'width',
                     'margin', 'padding', 'display', 'content', 'cursor', 'list-style', 'behavior', '-moz-binding']
_CLASSIC = [
    '<script>fetch("{u}")</script>', '<script src="{u}"></script>', '<SCRIPT SRC="{u}"></SCRIPT>',
    '<img src="x" onerror="fetch(\'{u}\')">', '<img src=x onerror=fetch(\'{u}\')>', '<svg onload="fetch(\'{u}\')">',
    '<body onload="fetch(\'{u}\')">', '<iframe src="{u}"></iframe>', '<iframe srcdoc="&lt;img src={u}&gt;"></iframe>',
    '<object data="{u}"></object>', '<embed src="{u}">', '<video poster="{u}"></video>',
    '<video><source src="{u}"></video>', '<audio src="{u}"></audio>', '<input type="image" src="{u}">',
    '<form action="{u}"><button>go</button></form>', '<base href="{u}/"><img src="cid:x">',
    '<style>@import "{u}";</style>', '<style>p{{background:url({u})}}</style><p>p</p>',
    '<img src="{u}">', '<img src=" {u}">', '<IMG SRC="{u}">', '<img src="{rel}">', '<img src="//{host}{path}">',
    '<img srcset="{u} 1x">', '<img src="cid:a" srcset="{u} 2x">', '<picture><source srcset="{u}"><img></picture>',
    '<table background="{u}"><tr><td>t</td></tr></table>', '<td background="{u}">t</td>',
    '<body background="{u}">', '<svg><image href="{u}"></image></svg>', '<svg><image xlink:href="{u}"/></svg>',
    '<meta http-equiv="refresh" content="0;url={u}">', '<link rel="stylesheet" href="{u}">',
    '<link rel="prefetch" href="{u}">', '<link rel="preload" as="image" href="{u}">',
    '<math><mtext><table><mglyph><style><img src="{u}">', '<noscript><p title="</noscript><img src={u}>">',
    '<details open ontoggle="fetch(\'{u}\')">d</details>', '<marquee onstart="fetch(\'{u}\')">m</marquee>',
    '<a href="javascript:fetch(\'{u}\')">a</a>', '<a href="JaVaScRiPt:fetch(\'{u}\')">a</a>',
    '<a href="&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;:fetch(\'{u}\')">a</a>',
    '<img src="data:image/svg+xml,&lt;svg xmlns=\'http://www.w3.org/2000/svg\' onload=\'fetch(&quot;{u}&quot;)\'/&gt;">',
    '<img src="data:text/html,&lt;img src={u}&gt;">', '<object data="data:text/html,&lt;img src={u}&gt;"></object>',
    '<template><img src="{u}"></template>', '<xmp><img src="{u}"></xmp>', '<div style="background-image:url({u})">b</div>',
    '<p style="behavior:url({u})">b</p>', '<div style="-moz-binding:url({u})">b</div>',
    '<div style="width:expression(fetch(\'{u}\'))">e</div>', '<a href="{u}" ping="{u}">ping</a>',
    '<isindex action="{u}">', '<img src="x" style="background:url({u})">', '<frameset><frame src="{u}"></frameset>',
    '<applet code="{u}"></applet>', '<bgsound src="{u}">', '<img lowsrc="{u}">', '<img dynsrc="{u}">',
    '<div style="list-style:url({u})"><li>l</li></div>', '<ul style="list-style-image:url({u})"><li>l</li></ul>',
    '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">b64</a>', '<a href="vbscript:msgbox(1)">vb</a>',
]
NEWSLETTER = '''<table width="600" cellpadding="0" cellspacing="0">
<tr><td class="band" style="background:#556677;color:#ffffff;padding:12px">Spring news, white on a band</td></tr>
<tr><td class="divider" style="border-top-width:2px;border-top-style:solid;border-top-color:#333333">Items</td></tr>
<tr><td class="rule" style="border-bottom:1px dashed #ff0000">Footer</td></tr>
<tr><td class="shorthand" style="background:#ffcc00 url(https://cdn.example/bg.png) no-repeat">Sale</td></tr>
</table>'''
NEWSLETTER_CHECKS = {          # class -> (property, value Chromium computes for the newsletter as sent)
    'band': [('backgroundColor', 'rgb(85, 102, 119)'), ('color', 'rgb(255, 255, 255)')],
    'divider': [('borderTopStyle', 'solid'), ('borderTopWidth', '2px'), ('borderTopColor', 'rgb(51, 51, 51)')],
    'rule': [('borderBottomStyle', 'dashed'), ('borderBottomColor', 'rgb(255, 0, 0)')],
    'shorthand': [('backgroundColor', 'rgb(255, 204, 0)'), ('backgroundImage', 'none')],
}
HARNESS = '''<script>
(function () {
  var content = document.getElementById('content');
  var out = {links: [], images: [], styles: {}};
  content.querySelectorAll('a[href], area[href]').forEach(function (a) { out.links.push(a.protocol + a.href.slice(0, 40)); });
  content.querySelectorAll('img[src]').forEach(function (img) { out.images.push(img.src.slice(0, 40)); });
  var checks = %s;
  Object.keys(checks).forEach(function (name) {
    var el = content.querySelector('.' + name);
    out.styles[name] = {};
    checks[name].forEach(function (pair) { out.styles[name][pair[0]] = el ? getComputedStyle(el)[pair[0]] : null; });
  });
  document.getElementById('results').textContent = JSON.stringify(out);
})();
</script>'''


def hostile_vectors() -> list[str]:
    """Raw vectors, `{u}` etc. still to be filled in per vector."""
    vectors = []
    for scheme, payload in _PAYLOADS.items():
        for trick in _SCHEME_TRICKS:
            prefix = trick.format(s=scheme, a=scheme[:2], b=scheme[2:], U=scheme.upper(),
                                  e=''.join('&#%d;' % ord(c) for c in scheme))
            vectors.append('<a href="%s%s">%s link</a>' % (prefix, payload, scheme))
            if scheme == 'data':
                vectors.append('<img src="%simage/svg+xml,&lt;svg/&gt;">' % prefix)
                vectors.append('<img src="%stext/html,x">' % prefix)
    for prop in _STYLE_PROPERTIES:
        for load in _STYLE_LOADS:
            vectors.append('<div style="%s:%s">styled</div>' % (prop, html.escape(load)))
    return vectors + _CLASSIC


class _Recorder(http.server.BaseHTTPRequestHandler):
    page = b''
    requests: list[str] = []

    def do_GET(self):   # noqa: N802 (the standard library's name)
        type(self).requests.append(self.path)
        body = self.page if self.path == '/page.html' else b''
        self.send_response(200 if body else 404)
        self.send_header('Content-Type', 'text/html; charset=utf-8')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args):
        pass


def build_page(host: str, port: int) -> tuple[bytes, int]:
    pieces = []
    vectors = hostile_vectors()
    for n, vector in enumerate(vectors):
        path = '/leak/%d' % n
        filled = vector.replace('{u}', 'http://%s:%d%s' % (host, port, path)).replace('{rel}', path.lstrip('/')) \
            .replace('{host}', '%s:%d' % (host, port)).replace('{path}', path).replace('{{', '{').replace('}}', '}')
        cleaned = sanitize_html(filled)
        assert cleaned is not None
        pieces.append('<div class="vector">%s</div>' % cleaned)
    pieces.append('<div class="newsletter">%s</div>' % sanitize_html(NEWSLETTER))
    page = ('<!DOCTYPE html><html><head><meta charset="utf-8"><link rel="icon" href="data:,"></head><body>'
            '<div id="content">%s</div><pre id="results"></pre>%s</body></html>'
            % ('\n'.join(pieces), HARNESS % json.dumps(NEWSLETTER_CHECKS)))
    return page.encode('utf-8'), len(vectors)


@pytest.fixture(scope='module')
def rendered():
    """(requests the server saw, the harness's results) for one Chromium run over the page."""
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _Recorder)
    host, port = server.server_address
    _Recorder.page, count = build_page(host, port)
    _Recorder.requests = []
    thread = threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.1}, daemon=True)
    thread.start()
    profile = tempfile.mkdtemp(prefix='postdesk-chromium-')
    process = subprocess.Popen([CHROMIUM, *FLAGS, '--user-data-dir=' + profile,
                                'http://%s:%d/page.html' % (host, port)], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        out, _ = process.communicate(timeout=BROWSER_TIMEOUT)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        else:
            try:
                os.killpg(process.pid, signal.SIGKILL)     # helpers Chromium left in its own process group
            except ProcessLookupError:
                pass
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        shutil.rmtree(profile, ignore_errors=True)
    found = re.search(r'<pre id="results">(.*?)</pre>', out.decode('utf-8', 'replace'), re.S)
    assert found and found.group(1), 'the harness wrote no results: %r' % out[-2000:]
    return list(_Recorder.requests), json.loads(html.unescape(found.group(1))), count


def test_enough_hostile_vectors_are_rendered(rendered):
    _, _, count = rendered
    assert count >= 200


def test_nothing_but_the_page_is_requested_and_no_script_runs(rendered):
    requests, _, _ = rendered
    assert requests == ['/page.html']


def test_links_the_browser_parses_have_only_allowed_schemes(rendered):
    _, results, _ = rendered
    for link in results['links']:
        assert link.split(':', 1)[0] + ':' in ('http:', 'https:', 'mailto:', 'tel:', 'cid:'), link


def test_images_the_browser_would_load_are_only_embedded_ones(rendered):
    _, results, _ = rendered
    for src in results['images']:
        assert src.startswith(('cid:', 'data:image/')) and 'svg' not in src, src


def test_newsletter_keeps_its_background_band_and_border_dividers(rendered):
    _, results, _ = rendered
    for name, checks in NEWSLETTER_CHECKS.items():
        for prop, expected in checks:
            assert results['styles'][name][prop] == expected, (name, prop, results['styles'][name])
