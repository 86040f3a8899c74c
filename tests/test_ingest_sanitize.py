"""The HTML an agent's browser will render: nothing that runs, submits, loads remote content or escapes the page."""
from __future__ import annotations

import re

import pytest

from ingest import parse_message
from ingest.sanitize import sanitize_html

HOSTILE = '''<html><head>
<base href="https://evil.example/">
<style>body { background: url(https://evil.example/bg.png) } .hidden-style-rule { display: none }</style>
<script type="text/javascript">stealCookies("script-secret")</script>
</head>
<body onload="bodyHandler()">
<p onclick="clickHandler()" onmouseover="overHandler()" style="color: red">Hello <b>agent</b></p>
<SCRIPT>alert("upper-case-script")</SCRIPT>
<a href="javascript:alert('js-link')">js link</a>
<a href="JaVaScRiPt:alert(2)">mixed case js link</a>
<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">data link</a>
<form action="https://evil.example/phish"><input name="password"><button>Log in</button></form>
<iframe src="https://evil.example/frame"></iframe>
<iframe src="data:text/html,&lt;script&gt;alert(1)&lt;/script&gt;"></iframe>
<object data="https://evil.example/x.swf"></object><embed src="https://evil.example/y.swf">
<img src="cid:logo@example.org" alt="logo" onerror="imgHandler()">
<img src="data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==" alt="dot">
<img src="https://tracker.example/pixel.gif?u=42" alt="pixel">
<a href="https://example.com/help">help page</a>
</body></html>'''


@pytest.fixture(scope='module', params=['direct', 'parse_message'])
def cleaned(request) -> str:
    if request.param == 'direct':
        return sanitize_html(HOSTILE)
    raw = b'From: a@example.org\nSubject: html\nContent-Type: text/html; charset=utf-8\n\n' + HOSTILE.encode()
    html = parse_message(raw).html
    assert html is not None
    return html


def test_visible_text_and_formatting_survive(cleaned):
    assert '<b>agent</b>' in cleaned
    assert 'Hello' in cleaned


def test_script_elements_and_their_text_are_removed(cleaned):
    assert '<script' not in cleaned.lower()
    assert 'script-secret' not in cleaned and 'stealCookies' not in cleaned
    assert 'upper-case-script' not in cleaned


def test_style_elements_and_their_contents_are_removed(cleaned):
    assert '<style' not in cleaned.lower()
    assert 'hidden-style-rule' not in cleaned
    assert 'evil.example/bg.png' not in cleaned


def test_event_handler_attributes_are_removed(cleaned):
    assert not re.search(r'\son\w+\s*=', cleaned, re.I), cleaned
    for handler in ('bodyHandler', 'clickHandler', 'overHandler', 'imgHandler'):
        assert handler not in cleaned


def test_javascript_urls_are_removed(cleaned):
    assert 'javascript:' not in cleaned.lower()
    assert 'js link' in cleaned                       # the link text stays, the URL goes


def test_data_text_html_urls_are_removed(cleaned):
    assert 'data:text/html' not in cleaned.lower()


def test_forms_iframes_objects_and_base_are_removed(cleaned):
    lowered = cleaned.lower()
    for tag in ('<form', '<input', '<button', '<iframe', '<object', '<embed', '<base'):
        assert tag not in lowered, tag
    assert 'evil.example/phish' not in cleaned and 'evil.example/frame' not in cleaned


def test_cid_images_are_kept(cleaned):
    assert 'src="cid:logo@example.org"' in cleaned


def test_data_png_images_are_kept(cleaned):
    assert re.search(r'<img [^>]*src="data:image/png;base64,iVBORw0KGgo', cleaned), cleaned


def test_remote_images_are_moved_to_data_src(cleaned):
    assert 'data-src="https://tracker.example/pixel.gif?u=42"' in cleaned
    assert not re.search(r'\ssrc="https?:', cleaned, re.I), cleaned


def test_links_keep_https_href_and_get_noopener_noreferrer(cleaned):
    link = re.search(r'<a [^>]*href="https://example.com/help"[^>]*>', cleaned)
    assert link, cleaned
    assert 'rel="noopener noreferrer"' in link.group(0)


# ---------------------------------------------------------------------------- sanitize_html directly

def test_comments_are_dropped():
    assert sanitize_html('<p>a<!-- internal note -->b</p>') == '<p>ab</p>'


def test_css_that_loads_urls_or_positions_is_filtered_from_style_attributes():
    cleaned = sanitize_html('<p style="color: red; background-image: url(https://evil.example/x.png); '
                            'position: fixed">s</p>')
    assert 'url(' not in cleaned and 'position' not in cleaned
    assert 'color:red' in cleaned.replace(' ', '')


def test_svg_data_image_is_removed():
    # An SVG image can carry script; only raster data: images are kept.
    cleaned = sanitize_html('<img src="data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=" alt="x">')
    assert 'data:' not in cleaned


def test_data_url_on_a_link_is_removed_even_for_images():
    cleaned = sanitize_html('<a href="data:image/png;base64,iVBORw0KGgo=">x</a>')
    assert 'data:' not in cleaned


def test_mailto_links_are_kept():
    cleaned = sanitize_html('<a href="mailto:help@example.org">mail us</a>')
    assert 'href="mailto:help@example.org"' in cleaned


def test_entity_encoded_javascript_url_is_removed():
    cleaned = sanitize_html('<a href="&#106;avascript:alert(1)">x</a><a href="java&#x09;script:alert(1)">y</a>')
    assert 'javascript' not in cleaned.lower() and 'alert' not in cleaned


def test_upper_case_remote_image_is_moved_to_data_src():
    cleaned = sanitize_html('<IMG SRC="HTTPS://tracker.example/p.gif">')
    assert 'data-src="HTTPS://tracker.example/p.gif"' in cleaned
    assert ' src=' not in cleaned


def test_remote_image_after_attribute_containing_greater_than_is_moved_to_data_src():
    cleaned = sanitize_html('<img alt="a > b" src="https://tracker.example/p.gif">')
    assert ' src="https' not in cleaned
    assert 'data-src="https://tracker.example/p.gif"' in cleaned


def test_remote_image_with_leading_space_in_url_is_not_loaded():
    cleaned = sanitize_html('<img src=" https://tracker.example/p.gif">')
    assert not re.search(r'\ssrc="\s*(https?:)?//', cleaned, re.I), cleaned


def test_protocol_relative_remote_image_is_not_loaded():
    cleaned = sanitize_html('<img src="//tracker.example/p.gif">')
    assert not re.search(r'\ssrc="\s*(https?:)?//', cleaned, re.I), cleaned


# ---------------------------------------------------------------------------- URLs as a browser reads them

DATA_IMAGE = '<img src="data:image/png;base64,iVBORw0KGgo=" alt="dot">'


@pytest.mark.parametrize('href', ['&#1;data:text/html,x', 'da&#9;ta:text/html,x', 'data&#13;:text/html,x',
                                  ' &#31;data:text/html,x', 'd&#10;ata:text/html,x', '&#1;javascript:alert(1)',
                                  'java&#9;script:alert(1)', 'javascript&#13;:alert(1)', '&#x1f;vbscript:msgbox(1)',
                                  'vb&#10;script:msgbox(1)', '&#100;ata:text/html,x'])
@pytest.mark.parametrize('with_data_image', [False, True])
def test_obfuscated_data_javascript_and_vbscript_links_never_survive(href, with_data_image):
    cleaned = sanitize_html('<a href="%s">x</a>%s' % (href, DATA_IMAGE if with_data_image else ''))
    assert 'href' not in cleaned
    assert ('src="data:image/png' in cleaned) is with_data_image


def test_obfuscated_data_url_on_an_image_is_judged_after_removing_tabs():
    cleaned = sanitize_html('<img src="da&#9;ta:image/svg+xml,&lt;svg/&gt;">' + DATA_IMAGE)
    assert 'svg' not in cleaned


# ---------------------------------------------------------------------------- styles

def test_background_and_border_longhands_with_colours_widths_and_styles_are_kept():
    cleaned = sanitize_html('<table><tr><td style="background:#556677;border-top-width:2px;border-top-style:solid;'
                            'border-top-color:#333333;border-bottom:1px dashed rgb(1, 2, 3)">x</td></tr></table>')
    for kept in ('background:#556677', 'border-top-width:2px', 'border-top-style:solid',
                 'border-top-color:#333333', 'border-bottom:1px dashed rgb(1, 2, 3)'):
        assert kept in cleaned


@pytest.mark.parametrize('declaration', [
    'background:url(https://evil.example/a.png)', 'border:1px solid url(https://evil.example/b)',
    'width:expression(alert(1))', 'color:u\\72l(https://evil.example/c)', 'font-family:x;behavior:url(x.htc)',
    'margin:0 -moz-binding', 'padding:1px @import', 'background:image-set("https://evil.example/d.png" 1x)',
    'border-left-color:red url(https://evil.example/e)'])
def test_style_values_that_could_load_or_run_something_are_removed(declaration):
    cleaned = sanitize_html('<p style="color:red;%s">x</p>' % declaration)
    assert 'url' not in cleaned and 'expression' not in cleaned and 'evil' not in cleaned
    assert 'binding' not in cleaned and '@import' not in cleaned and 'image-set' not in cleaned
    assert 'color:red' in cleaned


def test_background_with_an_image_keeps_its_colour_only():
    cleaned = sanitize_html('<div style="background:#ffcc00 url(https://evil.example/bg.png) no-repeat">x</div>')
    assert 'url' not in cleaned
    assert 'background-color:#ffcc00' in cleaned
