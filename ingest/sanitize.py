"""HTML cleaning by allowlist (nh3, the Python binding of the Rust crate ammonia) and HTML-to-text (html2text).

Policy, shared by inbound mail and outbound replies:
  * only formatting tags survive; `<script>`, `<style>`, `<title>`, `<xml>`, forms, frames, `<object>` and
    `<base>` are removed with their contents; comments are dropped;
  * only presentational attributes survive (no `on*` handlers, no `id`, no `background=`, no `srcset`);
  * `style` keeps layout and typography properties, `background` and the `border` shorthands and longhands
    (no `background-image`, no `position`). No style value keeps a function other than `rgb()`/`hsl()` (so no
    `url(`, `expression(`, `image-set(`), a CSS escape, `@import`, `behavior` or `-moz-binding`: such a
    declaration is dropped, and a `background` keeps only its colour;
  * URLs are judged as a browser reads them (WHATWG URL: leading and trailing control characters and spaces
    removed, tab, LF and CR removed anywhere, after entity decoding): http, https, mailto, tel and `cid:`;
    `data:` only for `<img src="data:image/...">` other than SVG;
  * remote images are not loaded automatically: `<img src="https://...">` becomes `<img data-src="https://...">`
    so a viewer can restore it on request.

bleach is not used: its maintainers ended it on 2026-06-05 with no further releases, security fixes included;
measured here it was about 20 times slower than nh3 and left the text of `<script>`/`<style>` in its output.
"""
from __future__ import annotations

import html as _html
import re

import html2text
import nh3

MAX_HTML_DEPTH = 1000      # deeper HTML is not sanitised: html5ever, under nh3, is quadratic in the depth
_TAGS = {
    'a', 'abbr', 'address', 'article', 'aside', 'b', 'bdi', 'bdo', 'big', 'blockquote', 'br', 'caption', 'center',
    'cite', 'code', 'col', 'colgroup', 'dd', 'del', 'details', 'dfn', 'div', 'dl', 'dt', 'em', 'figcaption',
    'figure', 'font', 'footer', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'header', 'hr', 'i', 'img', 'ins', 'kbd', 'li',
    'mark', 'ol', 'p', 'pre', 'q', 's', 'samp', 'section', 'small', 'span', 'strike', 'strong', 'sub', 'summary',
    'sup', 'table', 'tbody', 'td', 'tfoot', 'th', 'thead', 'time', 'tr', 'tt', 'u', 'ul', 'var', 'wbr',
}
_DROPPED_WITH_CONTENT = {'script', 'style', 'title', 'xml', 'form', 'iframe', 'frame', 'frameset', 'object',
                         'embed', 'applet', 'noscript', 'template', 'svg', 'math', 'select', 'textarea', 'button'}
_COMMON_ATTRIBUTES = {'style', 'class', 'dir', 'lang', 'title', 'align', 'valign', 'width', 'height', 'bgcolor',
                      'color', 'border', 'cellpadding', 'cellspacing', 'colspan', 'rowspan', 'nowrap', 'face',
                      'size', 'span', 'start', 'type', 'datetime', 'summary', 'abbr', 'scope', 'headers'}
_TAG_ATTRIBUTES = {'*': _COMMON_ATTRIBUTES, 'a': {'href', 'name', 'target'}, 'img': {'src', 'alt', 'hspace', 'vspace'},
                   'ol': {'reversed'}}
_STYLE_PROPERTIES = {
    'color', 'background-color', 'font', 'font-family', 'font-size', 'font-style', 'font-variant', 'font-weight',
    'text-align', 'text-decoration', 'text-indent', 'text-transform', 'line-height', 'letter-spacing',
    'word-spacing', 'white-space', 'vertical-align', 'direction', 'unicode-bidi',
    'margin', 'margin-top', 'margin-right', 'margin-bottom', 'margin-left',
    'padding', 'padding-top', 'padding-right', 'padding-bottom', 'padding-left',
    'border', 'border-top', 'border-right', 'border-bottom', 'border-left', 'border-color', 'border-style',
    'border-width', 'border-collapse', 'border-spacing', 'border-radius', 'background',
    'border-top-width', 'border-top-style', 'border-top-color', 'border-right-width', 'border-right-style',
    'border-right-color', 'border-bottom-width', 'border-bottom-style', 'border-bottom-color',
    'border-left-width', 'border-left-style', 'border-left-color',
    'width', 'height', 'max-width', 'min-width', 'max-height', 'min-height', 'display', 'float', 'clear',
    'list-style-type', 'table-layout', 'caption-side', 'empty-cells', 'overflow', 'text-overflow',
}
_URL_SCHEMES = {'http', 'https', 'mailto', 'tel', 'cid'}
_MARKDOWN_ESCAPE = re.compile(r'\\([\\`*_{}\[\]()#+\-.!])')   # html2text's Markdown escapes, undone exactly
_CELL_END = re.compile(r'</t[dh]\s*>', re.I)                  # table cells read "Order: 12345", not "Order:12345"
_TRAILING_SPACES = re.compile(r'[ \t]+\n')
_DATA_URL = re.compile(r'[dD][aA][tT][aA]:')
# Everything but an embedded image (cid:, data:) is fetched from somewhere: http(s), protocol-relative `//host`,
# a URL with leading white space, a relative path (resolved against the page showing the mail).
_REMOTE_IMAGE_SRC = re.compile(r' src="(?!\s*(?:cid|data):)', re.I)


_URL_ATTRIBUTES = frozenset({'href', 'src'})
_URL_STRIP = ''.join(chr(c) for c in range(0x21))           # C0 controls and space, as a browser trims a URL
_URL_INSIDE = re.compile('[\t\n\r]')
_SCHEME = re.compile(r'([A-Za-z][A-Za-z0-9+.-]*):')


def browser_url(value: str) -> str:
    """A URL attribute as a browser reads it (WHATWG URL): leading and trailing C0 controls and spaces
    removed, tab, LF and CR removed anywhere."""
    return _URL_INSIDE.sub('', value.strip(_URL_STRIP))


def judge_url(tag: str, attribute: str, value: str) -> str | None:
    """nh3's attribute filter: a URL attribute whose scheme, as the browser reads it, is not allowed goes;
    `data:` is allowed only for raster images in `<img src>`."""
    if attribute not in _URL_ATTRIBUTES:
        return value
    url = browser_url(value)
    scheme = _SCHEME.match(url)
    if scheme is None:
        return url
    name = scheme.group(1).lower()
    if name == 'data':
        is_image = tag == 'img' and attribute == 'src' and url[:11].lower() == 'data:image/'
        return url if is_image and 'svg' not in url[:30].lower() else None
    return url if name in _URL_SCHEMES else None


def _cleaner(allow_data_images: bool) -> nh3.Cleaner:
    return nh3.Cleaner(tags=_TAGS, clean_content_tags=_DROPPED_WITH_CONTENT, attributes=_TAG_ATTRIBUTES,
                       attribute_filter=judge_url if allow_data_images else None,
                       url_schemes=_URL_SCHEMES | {'data'} if allow_data_images else _URL_SCHEMES,
                       filter_style_properties=_STYLE_PROPERTIES, strip_comments=True,
                       link_rel='noopener noreferrer')


# Two cleaners: the per-attribute Python callback that admits `data:` on images only costs as much as the rest
# of the cleaning, so it runs only for HTML that contains `data:` at all.
_CLEANER = _cleaner(allow_data_images=False)
_CLEANER_WITH_DATA_IMAGES = _cleaner(allow_data_images=True)


def sanitize_html(html: str, *, defer_images: bool = True, max_depth: int = MAX_HTML_DEPTH) -> str | None:
    """Clean untrusted HTML by the allowlist above and defer remote images to `data-src`. With
    `defer_images=False` remote `<img src>` stay as they are: an agent's own outgoing images must load for the
    customer. None for HTML nested deeper than `max_depth` elements, which cannot be cleaned in bounded time."""
    if nested_deeper_than(html, max_depth):
        return None
    cleaner = _CLEANER_WITH_DATA_IMAGES if _DATA_URL.search(html) else _CLEANER
    cleaned = clean_styles(cleaner.clean(html))
    return defer_remote_images(cleaned) if defer_images else cleaned


# nh3's output is canonical: lower-case tags, attribute values in double quotes with `&`, `"`, `<` and `>`
# escaped, so a start tag runs from `<` to the next `>` and a style value to the next `"`.
_RISKY = r'[(\\@]|behavior|binding|expression|javascript'
_RISKY_MARKERS = ('(', '\\', '@', 'behavior', 'binding', 'expression', 'javascript')
_TAG_WITH_RISKY_STYLE = re.compile(r'<[a-z][^>]*? style="[^"]*?(?:%s)[^>]*>' % _RISKY, re.I)
_STYLE_ATTRIBUTE = re.compile(r' style="([^"]*)"')
_RISKY_STYLE = re.compile(_RISKY, re.I)
_FORBIDDEN_STYLE = re.compile(r'[\\@]|behavior|binding|expression|javascript|url', re.I)
_CSS_COMMENT = re.compile(r'/\*.*?(?:\*/|$)', re.S)
_FUNCTION = re.compile(r'([A-Za-z-]*)\s*\(')
_COLOUR_FUNCTIONS = frozenset({'rgb', 'rgba', 'hsl', 'hsla'})
_COLOUR = re.compile(r'#[0-9a-fA-F]{3,8}|(?:rgba?|hsla?)\([^()]*\)|[A-Za-z]+')
_BOX_TOKEN = re.compile(r'#[0-9a-fA-F]{3,8}|(?:rgba?|hsla?)\([^()]*\)|[A-Za-z-]+|-?[0-9.]+(?:[a-zA-Z%]+)?|!important')
_BOX_PROPERTY = re.compile(r'(?:background|border(?:-(?:top|right|bottom|left))?(?:-(?:width|style|color))?)$')


def clean_styles(cleaned: str) -> str:
    """Remove from every style attribute of nh3's output the declarations that could load or run something."""
    if ' style="' not in cleaned or not has_risky_style(cleaned):
        return cleaned
    return _TAG_WITH_RISKY_STYLE.sub(_clean_tag_style, cleaned)


def has_risky_style(cleaned: str) -> bool:
    """A quick test over all style values at once (most mail has none worth a closer look)."""
    values = '"'.join(_STYLE_ATTRIBUTE.findall(cleaned)).lower()
    return any(marker in values for marker in _RISKY_MARKERS)


def _clean_tag_style(tag: re.Match) -> str:
    return _STYLE_ATTRIBUTE.sub(_clean_style_attribute, tag.group())


def _clean_style_attribute(attribute: re.Match) -> str:
    value = attribute.group(1)
    if not _RISKY_STYLE.search(value):
        return attribute.group()
    kept = clean_style_value(_html.unescape(value))
    return ' style="%s"' % _html.escape(kept, quote=True) if kept else ''


def clean_style_value(style: str) -> str:
    """The declarations of a style value that hold nothing a browser could load or run."""
    kept = []
    for declaration in _CSS_COMMENT.sub('', style).split(';'):
        name, colon, value = declaration.partition(':')
        name, value = name.strip().lower(), value.strip()
        if not colon or not name or not value:
            continue
        if _is_safe_style_value(name, value):
            kept.append('%s:%s' % (name, value))
        elif name == 'background':
            colour = _background_colour(value)
            if colour:
                kept.append('background-color:%s' % colour)
    return ';'.join(kept)


def _is_safe_style_value(name: str, value: str) -> bool:
    if _FORBIDDEN_STYLE.search(value):
        return False
    if any(function.group(1).lower() not in _COLOUR_FUNCTIONS for function in _FUNCTION.finditer(value)):
        return False
    if _BOX_PROPERTY.match(name):
        return _BOX_TOKEN.sub('', value).replace(',', '').strip() == ''
    return True


def _background_colour(value: str) -> str | None:
    """The colour of a `background` shorthand that also loads an image: `#fff url(x) no-repeat` gives `#fff`."""
    without_functions = re.sub(r'[A-Za-z-]*\([^()]*\)', lambda m: m.group() if m.group().split('(')[0].lower()
                               in _COLOUR_FUNCTIONS else ' ', value)
    for token in _COLOUR.findall(without_functions):
        if token.startswith(('#', 'rgb', 'hsl', 'RGB', 'HSL')) or token.lower() in _NAMED_COLOURS:
            return token
    return None


_NAMED_COLOURS = frozenset('''black white red green blue yellow orange purple gray grey silver maroon olive lime
    aqua teal navy fuchsia transparent pink brown gold beige ivory khaki lavender coral salmon tomato crimson
    indigo violet orchid plum tan wheat linen snow azure mintcream honeydew aliceblue ghostwhite whitesmoke
    gainsboro lightgray lightgrey darkgray darkgrey dimgray dimgrey lightblue darkblue skyblue steelblue
    royalblue midnightblue lightgreen darkgreen forestgreen seagreen lightyellow darkred firebrick
    darkorange lightpink hotpink deeppink cornsilk oldlace seashell floralwhite lemonchiffon papayawhip
    blanchedalmond bisque moccasin navajowhite peachpuff mistyrose lavenderblush antiquewhite'''.split())


def defer_remote_images(cleaned: str) -> str:
    """`<img src="https://...">` becomes `<img data-src="https://...">` in nh3's output (lower-case tags, quoted
    values); only `cid:` and `data:image/` sources stay, as they load nothing."""
    start = cleaned.find('<img ')
    if start < 0:
        return cleaned
    pieces, pos = [], 0
    while start >= 0:
        end = cleaned.find('>', start)
        if end < 0:
            break
        pieces.append(cleaned[pos:start])
        pieces.append(_REMOTE_IMAGE_SRC.sub(' data-src="', cleaned[start:end]))
        pos = end
        start = cleaned.find('<img ', end)
    pieces.append(cleaned[pos:])
    return ''.join(pieces)


def html_to_text(html: str) -> str:
    """Readable plain text from HTML (html2text, no line wrapping); quoted blocks become `> ` lines, list items
    keep their bullets; no other Markdown (no `#` headings, `* * *` rules or `~~` strike-through)."""
    converter = html2text.HTML2Text(bodywidth=0)
    converter.ignore_images = True
    converter.ignore_emphasis = True
    converter.ignore_links = True
    converter.ignore_tables = True
    converter.unicode_snob = True
    converter.single_line_break = False
    text = _MARKDOWN_ESCAPE.sub(r'\1', converter.handle(without_markdown_tags(_CELL_END.sub(r'\g<0> ', html))))
    text = _TRAILING_SPACES.sub('\n', text)
    return text.strip('\n') + ('\n' if text.strip() else '')


_MARKDOWN_TAG = re.compile(r'<(/?)(h[1-6]|hr|del|s|strike)(?=[\s/>])[^>]*>', re.I)


def without_markdown_tags(html: str) -> str:
    """Headings become paragraphs, rules and strike-through tags go: html2text would write them as Markdown
    (`# `, `* * *`, `~~`), which a reader of plain text sees as noise. List bullets stay."""
    return _MARKDOWN_TAG.sub(_plain_tag, html)


def _plain_tag(match: re.Match) -> str:
    name = match.group(2).lower()
    if name[0] == 'h' and name != 'hr':
        return '</p>' if match.group(1) else '<p>'
    return '<br>' if name == 'hr' else ''


_TAG = re.compile(r'<(/?)([a-zA-Z][a-zA-Z0-9:-]*)[^>]*?(/?)>')
# Elements that never hold others, or that HTML closes implicitly: they do not make a document deep.
_FLAT_ELEMENTS = frozenset({'area', 'base', 'br', 'col', 'embed', 'hr', 'img', 'input', 'link', 'meta', 'param',
                            'source', 'track', 'wbr', 'p', 'li', 'td', 'th', 'tr', 'dt', 'dd', 'option'})


def nested_deeper_than(html: str, limit: int) -> bool:
    """True when elements nest deeper than `limit`: html5ever, under nh3, takes quadratic time on such input
    (200,000 nested <div> took minutes). Short documents cannot be that deep and are not scanned."""
    if len(html) < limit * 4:
        return False
    depth = 0
    for match in _TAG.finditer(html):
        closing, name, self_closing = match.groups()
        if self_closing or name.lower() in _FLAT_ELEMENTS:
            continue
        depth = max(depth - 1, 0) if closing else depth + 1
        if depth > limit:
            return True
    return False


def strip_tags(html: str) -> str:
    """Text of HTML that cannot be sanitised: tags dropped, entities decoded, white space tidied."""
    text = _html.unescape(re.sub(r'<[^>]*>', ' ', html))
    return re.sub(r'[ \t]+', ' ', text).strip() + '\n'
