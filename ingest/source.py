"""The bytes each MIME part was parsed from (RFC 2046 5.1.1, RFC 2046 5.2.1), found again in the message's source.

The standard library's parser keeps no offsets, and flattening a part again rewrites its line endings and may
refold its header fields; an attached message (`message/rfc822`) is kept byte for byte, since its signatures
(DKIM, S/MIME) cover those bytes. The source is split as the parser split it: a multipart body at its
delimiter lines (the line break before a delimiter belongs to the delimiter), a `message/*` part's body as the
message it holds. Where the split does not give as many children as the parser found (a repaired boundary, a
structure the parser read otherwise), those parts have no source and their callers flatten them instead.
"""
from __future__ import annotations

import re
from email.message import Message

_HEADER_END = re.compile(rb'\r?\n\r?\n')
_LEADING_LINE_BREAK = re.compile(rb'\r?\n')


class SourceIndex:
    """The source bytes of the parts of one parsed message, read on the first question."""

    def __init__(self, message: Message, source: bytes, max_parts: int):
        self.message, self.source, self.max_parts = message, source, max_parts
        self.parts: dict[int, tuple[Message, bytes]] | None = None

    def bytes_of(self, part: Message) -> bytes | None:
        """The bytes `part` (header and body) was parsed from; None when they cannot be told."""
        if self.parts is None:
            self.parts = index_parts(self.message, self.source, self.max_parts)
        found = self.parts.get(id(part))
        return found[1] if found is not None and found[0] is part else None


def index_parts(message: Message, source: bytes, max_parts: int) -> dict[int, tuple[Message, bytes]]:
    """Each part reachable from `message` whose source is known, by id, with the part itself (so that an id
    reused by another object is never taken for it)."""
    found: dict[int, tuple[Message, bytes]] = {}
    stack = [(message, source)]
    while stack and len(found) < max_parts:
        part, data = stack.pop()
        found[id(part)] = (part, data)
        stack.extend(reversed(children_with_source(part, body_of(data))))
    return found


def children_with_source(part: Message, body: bytes) -> list[tuple[Message, bytes]]:
    payload = part.get_payload()
    if not isinstance(payload, list):
        return []
    children = [child for child in payload if isinstance(child, Message)]
    if part.get_content_maintype() == 'multipart':
        boundary = part.get_boundary()
        segments = split_multipart(body, boundary.encode('ascii', 'surrogateescape')) if boundary else []
    elif part.get_content_maintype() == 'message':
        segments = [body]
    else:
        segments = []
    return list(zip(children, segments)) if len(segments) == len(children) == len(payload) else []


def body_of(data: bytes) -> bytes:
    """What follows a part's header block (all of it when the part has no header fields)."""
    leading = _LEADING_LINE_BREAK.match(data)
    if leading:
        return data[leading.end():]
    end = _HEADER_END.search(data)
    return data[end.end():] if end else b''


def split_multipart(body: bytes, boundary: bytes) -> list[bytes]:
    """A multipart body's parts, between its delimiter lines (`--boundary`, white space allowed after it), up to
    the close delimiter (`--boundary--`) or the end."""
    delimiter = re.compile(rb'(?:\A|(?<=\n))--' + re.escape(boundary) + rb'(--)?[ \t]*(\r\n|\n|\r|\Z)')
    parts: list[bytes] = []
    start = None
    for line in delimiter.finditer(body):
        if start is not None:
            parts.append(body[start:line_break_before(body, line.start())])
        if line.group(1):
            return parts
        start = line.end()
    if start is not None:
        parts.append(body[start:])
    return parts


def line_break_before(body: bytes, at: int) -> int:
    """Where the line break that ends just before `at` begins (it belongs to the delimiter line after it)."""
    if body[at - 2:at] == b'\r\n':
        return at - 2
    return at - 1 if at > 0 and body[at - 1:at] in (b'\n', b'\r') else at
