"""The bytes a MIME part was parsed from (RFC 2046 5.1.1, 5.2.1), found again in the message's source.

The standard library's parser keeps no offsets, and flattening a part again rewrites its line endings and may
refold its header fields; an attached message (`message/rfc822`) is kept byte for byte, since its signatures
(DKIM, S/MIME) cover those bytes. The source is split along the path from the message to the part as the parser
split it: a multipart body at its delimiter lines (the line break before a delimiter belongs to the delimiter),
a `message/*` part's body as the message it holds; offsets only, no copies. The bytes found are taken only when
they parse to the same message the parser found there (compared flattened); anything else (a repaired
boundary, a header block the parser ended otherwise, boundaries that nest as prefixes) gives None, and the
caller flattens the part instead.
"""
from __future__ import annotations

import email.parser
import email.policy
import re
from collections.abc import Callable
from email.message import Message

_HEADER_END = re.compile(rb'\r?\n\r?\n')
_LINE_BREAK = re.compile(rb'\r\n|\n|\r')

Span = tuple[int, int]


class SourceIndex:
    """Answers which bytes of `source` a part of `message` was parsed from."""

    def __init__(self, message: Message, source: bytes, max_depth: int, flatten: Callable[[Message], bytes]):
        self.message, self.source, self.max_depth, self.flatten = message, source, max_depth, flatten

    def bytes_of(self, part: Message) -> bytes | None:
        """The bytes `part` (header and body) was parsed from; None when they cannot be told for sure."""
        path = path_to(self.message, part, self.max_depth)
        span = span_of(self.source, path) if path is not None else None
        if span is None:
            return None
        found = self.source[span[0]:span[1]]
        try:
            reparsed = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(found)
            return found if self.flatten(reparsed) == self.flatten(part) else None
        except RecursionError:
            return None


def path_to(message: Message, part: Message, max_depth: int) -> list[Message] | None:
    """The parts from `message` down to `part` (both included), or None when it is not within max_depth."""
    stack = [[message]]
    while stack:
        path = stack.pop()
        if path[-1] is part:
            return path
        payload = path[-1].get_payload()
        if len(path) <= max_depth and isinstance(payload, list):
            stack.extend(path + [child] for child in payload if isinstance(child, Message))
    return None


def span_of(source: bytes, path: list[Message]) -> Span | None:
    """Where the last part of `path` lies in `source`, following the parser's splits from the first."""
    span = (0, len(source))
    for parent, child in zip(path, path[1:]):
        span = child_span(source, span, parent, child)
        if span is None:
            return None
    return span


def child_span(source: bytes, span: Span, parent: Message, child: Message) -> Span | None:
    payload = parent.get_payload()
    body = (body_start(source, span), span[1])
    if parent.get_content_maintype() == 'multipart':
        boundary = parent.get_boundary()
        if not boundary:
            return None
        parts = split_multipart(source, body, boundary.encode('ascii', 'surrogateescape'))
    elif parent.get_content_maintype() == 'message':
        parts = [body]
    else:
        return None
    if len(parts) != len(payload):
        return None
    return next((where for item, where in zip(payload, parts) if item is child), None)


def body_start(source: bytes, span: Span) -> int:
    """Where a part's body begins: after the blank line ending its header block (at once when it has no
    header fields; at the end when it has no body)."""
    start, end = span
    leading = _LINE_BREAK.match(source, start, end)
    if leading:
        return leading.end()
    blank = _HEADER_END.search(source, start, end)
    return blank.end() if blank else end


def split_multipart(source: bytes, body: Span, boundary: bytes) -> list[Span]:
    """A multipart body's parts, between its delimiter lines (`--boundary` at the start of a line, white space
    allowed after it), up to the close delimiter (`--boundary--`) or the end."""
    delimiter = re.compile(rb'(?:(?<=[\r\n])|\A)--' + re.escape(boundary) + rb'(--)?[ \t]*(?:\r\n|\n|\r|\Z)')
    start, end = body
    parts: list[Span] = []
    after = None
    for line in delimiter.finditer(source, start, end):
        if after is not None:
            parts.append((after, line_break_before(source, after, line.start())))
        if line.group(1):
            return parts
        after = line.end()
    if after is not None:
        parts.append((after, end))
    return parts


def line_break_before(source: bytes, floor: int, at: int) -> int:
    """Where the line break that ends just before `at` begins (it belongs to the delimiter line after it)."""
    if at - 2 >= floor and source[at - 2:at] == b'\r\n':
        return at - 2
    return at - 1 if at - 1 >= floor and source[at - 1:at] in (b'\n', b'\r') else at
