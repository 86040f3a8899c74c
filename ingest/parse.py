"""`parse_message`: raw RFC 822 bytes in, a `ParsedMail` out. The ingest stage's one entry point.

The MIME structure comes from the standard library's `email` package (compat32 policy, which keeps raw 8-bit
bytes as surrogate escapes so nothing is lost before our repairs); dates fall back to mail-parser's RFC 5322
reader; everything a peer parser gets wrong is repaired in `headers`, `charsets`, `parts` and `attachments`.
Limits (message size, MIME depth and part count, HTML size) make hostile input cost bounded time: what is past a
limit is left out with a defect, never a crash or a hang. An Outlook .msg file (MS-OXMSG) is first turned into
the MIME message it holds (`outlook`); a few stray lines before a real header block are skipped with a defect.
Input that is not a message at all raises `NotAMessage` with the reason.
"""
from __future__ import annotations

from collections.abc import Iterable

import email.parser
import email.policy
import re
from dataclasses import dataclass
from email.message import Message

from . import classify, outlook
from .bodies import BodyLimits, compose_bodies
from .charsets import clean_text
from .headers import choose_sender, decode_unstructured, parse_date, parse_mailboxes, parse_message_id, parse_message_ids, raw_bytes, unfold
from .model import Address, ParsedMail
from .parts import DeclaredCharsets, WalkLimits, iter_parts, walk
from .sanitize import MAX_HTML_DEPTH
from .structure import repair_header_folding

MAX_MESSAGE_BYTES = 25 * 1024 * 1024


class NotAMessage(ValueError):
    """The input is not an RFC 822 message at all (empty, binary, a headerless fragment, an unreadable
    Outlook .msg file...)."""


@dataclass(frozen=True)
class ParseLimits:
    max_message_bytes: int = MAX_MESSAGE_BYTES
    max_depth: int = 40
    max_parts: int = 1000
    max_html_bytes: int = 4 * 1024 * 1024
    max_html_to_text_bytes: int = 1024 * 1024
    max_html_depth: int = MAX_HTML_DEPTH


DEFAULT_LIMITS = ParseLimits()

_MAGIC = (
    (b'%PDF-', 'a PDF document, not an RFC 822 message'),
    (b'PK\x03\x04', 'a ZIP archive, not an RFC 822 message'),
    (b'\x89PNG', 'a PNG image, not an RFC 822 message'),
    (b'GIF8', 'a GIF image, not an RFC 822 message'),
    (b'\xff\xd8\xff', 'a JPEG image, not an RFC 822 message'),
    (b'\x1f\x8b', 'gzip-compressed data, not an RFC 822 message'),
    (b'BZh', 'bzip2-compressed data, not an RFC 822 message'),
)
_HEADER_LINE = re.compile(rb'^[A-Za-z][A-Za-z0-9_.-]{0,200}[ \t]*:')
_KNOWN_FIELD = re.compile(rb'(?:^|\n)(?:from|to|cc|subject|date|message-id|received|return-path|mime-version|'
                          rb'content-type|delivered-to|x-original-to|sender|reply-to|in-reply-to|references|'
                          rb'content-transfer-encoding|x-mailer|newsgroups|resent-from|x-sender)[ \t]*:', re.I)
_LEADING_BLANK_LINES = re.compile(rb'(?:[ \t]*\r?\n)+')


UTF8_BOM = b'\xef\xbb\xbf'       # what Windows editors put in front of a saved .eml
MAX_LINES_BEFORE_HEADER = 3      # stray lines (`---- Original email message ----`) skipped before a header block
MIN_KNOWN_FIELDS_AFTER_STRAY_LINES = 2


def reject_non_message(raw: bytes) -> None:
    """Raise NotAMessage unless `raw` starts like an RFC 822 message (optionally after an mbox `From ` line)."""
    header_start(raw)


def header_start(raw: bytes) -> int:
    """Where the header block starts: 0, or after a few stray lines that are followed by a real header block
    of known fields. Raises NotAMessage, with the reason, for input that is not a message."""
    if not raw.strip():
        raise NotAMessage('empty file')
    for magic, reason in _MAGIC:
        if raw.startswith(magic):
            raise NotAMessage(reason)
    head = strip_leading_blank_lines(raw[:4096])
    if head.count(b'\x00') > 16:
        raise NotAMessage('binary data (NUL bytes), not an RFC 822 message')
    lines = head.split(b'\n', 2)
    first = lines[1] if lines[0].startswith(b'From ') and len(lines) > 1 else lines[0]
    if not _HEADER_LINE.match(first):
        skipped = _stray_lines_before_header(raw)
        if skipped is None:
            raise NotAMessage('no RFC 822 header at the start (first line: %r)' % first[:60].decode('latin-1'))
        return skipped
    header_block = strip_leading_blank_lines(raw[:65536]).split(b'\n\n', 1)[0].split(b'\r\n\r\n', 1)[0]
    if not _KNOWN_FIELD.search(header_block):
        raise NotAMessage('no RFC 5322 or MIME header field (From, To, Subject, Date, Content-Type...) at the start')
    return 0


def _stray_lines_before_header(raw: bytes) -> int | None:
    """The length of at most MAX_LINES_BEFORE_HEADER lines that are not header fields but are followed by a
    header block with known fields (From, To, Subject...); None when no such block follows."""
    data = strip_leading_blank_lines(raw[:65536])
    offset = len(raw[:65536]) - len(data)
    pos = 0
    for _ in range(MAX_LINES_BEFORE_HEADER):
        end = data.find(b'\n', pos)
        if end < 0:
            return None
        pos = end + 1
        rest = data[pos:]
        if not _HEADER_LINE.match(rest):
            continue
        block = re.split(rb'\r?\n\r?\n', rest, maxsplit=1)[0]
        known = len(_KNOWN_FIELD.findall(b'\n' + block))
        if known >= MIN_KNOWN_FIELDS_AFTER_STRAY_LINES and _all_header_lines(block):
            return offset + pos
    return None


def _all_header_lines(block: bytes) -> bool:
    return all(_HEADER_LINE.match(line) or line[:1] in (b' ', b'\t') for line in block.split(b'\n') if line.strip())


def strip_leading_blank_lines(raw: bytes) -> bytes:
    """Lines of white space before the first header (seen in saved files) would read as an empty header."""
    blank = _LEADING_BLANK_LINES.match(raw)
    return raw[blank.end():] if blank else raw


def parse_message(raw: bytes, limits: ParseLimits = DEFAULT_LIMITS) -> ParsedMail:
    """Parse one message. Raises NotAMessage for input that is not a message; never raises otherwise."""
    defects: list[str] = []
    size = len(raw)
    if outlook.is_outlook_msg(raw):
        raw = _outlook_message(raw, defects)
    if raw.startswith(UTF8_BOM):
        defects.append('a UTF-8 byte order mark before the header block was skipped')
        raw = raw[len(UTF8_BOM):]
    start = header_start(raw)
    if start:
        defects.append('%d bytes of text before the header block were skipped: %r'
                       % (start, raw[:min(start, 80)].decode('utf-8', 'replace').strip()))
        raw = raw[start:]
    if size > limits.max_message_bytes:
        defects.append('message of %d bytes exceeds the %d byte limit; only the first %d bytes were parsed'
                       % (size, limits.max_message_bytes, limits.max_message_bytes))
        raw = raw[:limits.max_message_bytes]
    source = repair_header_folding(strip_leading_blank_lines(raw))
    message = _parse_structure(source, defects)
    if not message.keys():
        raise NotAMessage('no RFC 822 header fields found')
    return _build(message, limits, defects, size, source)


def _outlook_message(raw: bytes, defects: list[str]) -> bytes:
    """The RFC 822 message inside an Outlook .msg file; NotAMessage when it cannot be read."""
    try:
        message, found = outlook.msg_to_mime(raw)
    except outlook.UnreadableMsg as unreadable:
        raise NotAMessage(str(unreadable)) from None
    defects.append('Outlook .msg file, read as the RFC 822 message it holds')
    defects.extend(found)
    return message


def _parse_structure(raw: bytes, defects: list[str]) -> Message:
    try:
        return email.parser.BytesParser(policy=email.policy.compat32).parsebytes(raw)
    except RecursionError:
        defects.append('MIME structure nested too deeply to parse; only the header was read')
        message = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
        message.set_payload('')          # the body is unread MIME structure, not text to show
        return message


def _header_index(message: Message) -> dict[str, list]:
    index: dict[str, list] = {}
    for name, value in message.raw_items():
        index.setdefault(name.lower(), []).append(value)
    return index


def _build(message: Message, limits: ParseLimits, defects: list[str], size: int, source: bytes) -> ParsedMail:
    headers = _header_index(message)
    fallbacks = DeclaredCharsets(message, limits.max_parts)
    walked = walk(message, WalkLimits(limits.max_depth, limits.max_parts), fallbacks, source)
    defects.extend(walked.defects)
    defects.extend(_stdlib_defects(message, limits.max_parts))
    bodies = compose_bodies(walked.bodies, BodyLimits(limits.max_html_bytes, limits.max_html_to_text_bytes,
                                                      limits.max_html_depth))
    defects.extend(bodies.defects)
    text, html = bodies.text, bodies.html
    subject = decode_unstructured(_first(headers, 'subject'), fallbacks)
    sender = _sender(headers, fallbacks)
    content_type = message.get_content_type()
    rtype = classify.report_type(message, content_type)
    return ParsedMail(
        message_id=parse_message_id(_first(headers, 'message-id')) if 'message-id' in headers else None,
        subject=subject,
        from_=sender,
        to=tuple(parse_mailboxes(headers.get('to', []), fallbacks)),
        cc=tuple(parse_mailboxes(headers.get('cc', []), fallbacks)),
        reply_to=tuple(parse_mailboxes(headers.get('reply-to', []), fallbacks)),
        date=parse_date(_first(headers, 'date')),
        in_reply_to=tuple(parse_message_ids(_first(headers, 'in-reply-to'))),
        references=tuple(parse_message_ids(' '.join(_texts(headers.get('references', []))))),
        text=text,
        html=html,
        attachments=tuple(walked.attachments),
        auto_submitted=classify.auto_submitted_reason(headers, content_type, rtype),
        bounce=classify.bounce_report(sender, subject, text, content_type, rtype, walked.reports, walked.enclosed),
        defects=tuple(dict.fromkeys(clean_text(d) for d in defects)),
        raw_headers=tuple((name, str(value)) for name, value in message.raw_items()),
        size=size,
    )


def _first(headers: dict[str, list], name: str):
    values = headers.get(name)
    return values[0] if values else None


def _texts(values: list) -> list[str]:
    return [unfold(raw_bytes(v)).decode('utf-8', 'replace') for v in values]


def _sender(headers: dict[str, list], fallbacks: Iterable[str]) -> Address | None:
    """The first mailbox with an address across all From headers (duplicates happen), else Sender, else
    Reply-To; a mailbox without an address is skipped while another has one."""
    return choose_sender((headers.get(name, []), fallbacks) for name in ('from', 'sender', 'reply-to'))


def _stdlib_defects(message: Message, max_parts: int) -> list[str]:
    """The standard library's own findings (missing boundaries, bad base64...), by class name."""
    return [type(defect).__name__ for part in iter_parts(message, max_parts) for defect in part.defects]
