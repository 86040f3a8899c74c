"""Repairs to a message's structure that the standard library's parser does not make (RFC 5322 2.2, RFC 2046 5.1).

  * Header lines folded without leading white space (`by localhost with SMTP; ...` on a line of its own, seen
    from broken list software): the parser would end the header there and turn every later header into body
    text. A line that is not a field but is followed by more fields before the blank line is a continuation.
  * Multipart bodies whose boundary parameter is missing, cut off or does not match the delimiter lines
    actually used: the delimiter is recovered from the body (the `--X` line most often followed by a MIME
    header) and the part parsed again with it.
"""
from __future__ import annotations

import collections
import email.parser
import email.policy
import re
from email.message import Message

_HEADER_END = re.compile(rb'\r?\n\r?\n')
_BAD_HEADER_LINE = re.compile(rb'\n(?![ \t]|[!-9;-~]{1,200}[ \t]*:|\r?\n|$)')
_FIELD_LINE = re.compile(rb'^[!-9;-~]{1,200}[ \t]*:')
_DELIMITER_BEFORE_HEADER = re.compile(
    r'^--([^\r\n]{1,200}?)[ \t]*\r?\n(?=content-[a-z-]+[ \t]*:|mime-version[ \t]*:)', re.I | re.M)
_PARAM_BOUNDARY = re.compile(r'boundary\s*=\s*("[^"]*"|[^;\s]*)', re.I)


def repair_header_folding(raw: bytes) -> bytes:
    """Make lines inside the header block that are not fields into continuation lines, where more fields follow."""
    end = _HEADER_END.search(raw)
    if not end:
        return raw
    block = raw[:end.start()]
    if not _BAD_HEADER_LINE.search(block):
        return raw
    lines = block.split(b'\n')
    is_field = [bool(_FIELD_LINE.match(line)) for line in lines]
    last_field = max((i for i, field in enumerate(is_field) if field), default=-1)
    for i in range(1, last_field):
        if not is_field[i] and lines[i][:1] not in (b' ', b'\t'):
            lines[i] = b' ' + lines[i]
    return b'\n'.join(lines) + raw[end.start():]


def needs_boundary_repair(part: Message) -> bool:
    """A multipart part the parser could not split: its payload is still one string."""
    return part.get_content_maintype() == 'multipart' and isinstance(part.get_payload(), str)


def sniff_boundary(body: str) -> str | None:
    """The delimiter a multipart body really uses: the most frequent `--X` line followed by a MIME header."""
    counts = collections.Counter(m.group(1) for m in _DELIMITER_BEFORE_HEADER.finditer(body))
    if not counts:
        return None
    boundary, _ = counts.most_common(1)[0]
    return boundary


def reparse_with_boundary(part: Message, boundary: str) -> Message | None:
    """Parse a multipart part again with the boundary its body really uses; None if that fails too."""
    headers = []
    for name, value in part.raw_items():
        if name.lower() == 'content-type':
            value = _with_boundary(value, boundary)
        headers.append('%s: %s' % (name, value))
    body = part.get_payload()
    raw = ('\n'.join(headers) + '\n\n' + body).encode('utf-8', 'surrogateescape')
    try:
        fixed = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(raw)
    except RecursionError:
        return None
    return fixed if fixed.is_multipart() else None


def _with_boundary(value: str, boundary: str) -> str:
    quoted = '"%s"' % boundary.replace('\\', '\\\\').replace('"', '\\"')
    if _PARAM_BOUNDARY.search(value):
        return _PARAM_BOUNDARY.sub(lambda m: 'boundary=' + quoted, value, count=1)
    return value.rstrip().rstrip(';') + '; boundary=' + quoted
