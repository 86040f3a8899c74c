"""The message's `text` and `html` from its body parts (RFC 2046 5.1.3 multipart/mixed, 5.1.4 multipart/alternative).

  * The alternatives of one multipart/alternative make one piece: its plain text and its HTML. A plain-text
    alternative that is only a stub next to a much longer HTML one ("read this newsletter online: URL": under a
    third of the HTML's text, which is over 500 characters) gives way: the piece's text comes from the HTML.
  * Body parts that are not alternatives of each other (siblings in multipart/mixed, in any order) make one
    piece each. `text` holds every piece in MIME order, HTML made into text; `html`, when any piece is HTML,
    holds every piece in the same order, plain text escaped into it.
  * HTML is sanitised by `sanitize` within the limits; HTML too large is cut and HTML nested too deeply to
    sanitise in bounded time is left out of `html`, each with a defect, its text kept.
"""
from __future__ import annotations

import html as _html
import re
from dataclasses import dataclass

from .charsets import clean_text
from .parts import BodyText
from .sanitize import html_to_text, sanitize_html, strip_tags

STUB_HTML_MIN_CHARACTERS = 500    # the HTML's text must be longer than this for the plain text to be a stub
STUB_SHARE = 3                    # ...and at least this many times longer than the plain text
_TAG = re.compile(r'<[^>]*>')      # sanitised HTML: no <head>, <style> or <script> left whose text would count


@dataclass(frozen=True)
class BodyLimits:
    max_html_bytes: int
    max_html_to_text_bytes: int
    max_html_depth: int


@dataclass(frozen=True)
class Piece:
    """One body piece: an alternative group's plain text and raw HTML, or a single part's."""
    plain: str | None
    html: str | None


@dataclass(frozen=True)
class Bodies:
    text: str
    html: str | None
    defects: tuple[str, ...]


def group_pieces(bodies: list[BodyText]) -> list[Piece]:
    """Consecutive body parts of one multipart/alternative become one piece; every other part is its own."""
    groups: list[tuple[int | None, list[BodyText]]] = []
    for body in bodies:
        if body.alternative is not None and groups and groups[-1][0] == body.alternative:
            groups[-1][1].append(body)
        else:
            groups.append((body.alternative, [body]))
    return [_piece(members) for _, members in groups]


def _piece(members: list[BodyText]) -> Piece:
    plain = [m.text for m in members if m.kind == 'plain']
    html = [m.text for m in members if m.kind == 'html']
    return Piece(plain='\n'.join(plain) if plain else None, html='\n'.join(html) if html else None)


@dataclass
class _Budget:
    """What is left of the HTML limits for the whole message."""
    html: int
    to_text: int


def compose_bodies(bodies: list[BodyText], limits: BodyLimits) -> Bodies:
    pieces = group_pieces(bodies)
    budget = _Budget(limits.max_html_bytes, limits.max_html_to_text_bytes)
    defects: list[str] = []
    texts: list[str] = []
    htmls: list[str | None] = []
    for piece in pieces:
        cleaned = _clean_html(piece.html, limits, budget, defects) if piece.html is not None else None
        text = piece.plain
        if piece.html is not None and (text is None or not text.strip()):
            text = _text_of_html(cleaned, piece.html, budget, defects)
        elif piece.html is not None and cleaned is not None and looks_like_stub(text, cleaned):
            from_html = _text_of_html(cleaned, piece.html, budget, defects)
            if is_stub(text, from_html):
                text = from_html
        texts.append(text or '')
        htmls.append(cleaned if piece.html is not None else escape_plain(piece.plain or ''))
    has_html = any(piece.html is not None and cleaned is not None for piece, cleaned in zip(pieces, htmls))
    html = '\n'.join(h for h in htmls if h is not None) if has_html else None
    return Bodies(text='\n'.join(texts), html=html, defects=tuple(defects))


def escape_plain(text: str) -> str:
    """Plain text as HTML that shows it as it is: escaped, line breaks and spacing kept."""
    return '<div style="white-space: pre-wrap">%s</div>' % _html.escape(text, quote=False)


def visible_size(text: str) -> int:
    """Characters that are not white space."""
    return len(''.join(text.split()))


def looks_like_stub(plain: str, cleaned_html: str) -> bool:
    """A cheap first test (tags stripped by a regular expression) before the HTML is made into text."""
    size = visible_size(plain)
    if size * STUB_SHARE >= len(cleaned_html) or size * STUB_SHARE >= len(_TAG.sub('', cleaned_html)):
        return False            # an upper bound of the HTML's text (spaces and entities counted) is too short
    estimate = visible_size(_html.unescape(_TAG.sub(' ', cleaned_html)))
    return is_stub_size(size, estimate)


def is_stub(plain: str, text_of_html: str) -> bool:
    return is_stub_size(visible_size(plain), visible_size(text_of_html))


def is_stub_size(plain_size: int, html_size: int) -> bool:
    return html_size > STUB_HTML_MIN_CHARACTERS and plain_size * STUB_SHARE < html_size


def _clean_html(html: str, limits: BodyLimits, budget: _Budget, defects: list[str]) -> str | None:
    """The sanitised HTML of a piece; None (with a defect) for HTML nested too deeply to sanitise in bounded
    time, or when the message's HTML limit is used up."""
    if len(html) > budget.html:
        defects.append('HTML body of %d characters cut to %d before sanitising' % (len(html), max(budget.html, 0)))
        html = html[:max(budget.html, 0)]
    budget.html -= len(html)
    if not html:
        return None
    cleaned = sanitize_html(html, max_depth=limits.max_html_depth)
    if cleaned is None:
        defects.append('HTML body nested deeper than %d elements; dropped, its text kept' % limits.max_html_depth)
    return cleaned


def _text_of_html(cleaned: str | None, raw: str, budget: _Budget, defects: list[str]) -> str:
    limit = max(budget.to_text, 0)
    if cleaned is None:
        budget.to_text -= min(len(raw), limit)
        return strip_tags(raw[:limit])
    if len(cleaned) > limit:
        defects.append('HTML body too large to convert to text in full; converted the first %d characters' % limit)
        cleaned = cleaned[:limit]
    budget.to_text -= len(cleaned)
    return clean_text(html_to_text(cleaned)) if cleaned else ''
