"""The MIME walk (RFC 2045/2046/2183/2387): which parts are the message's own text and HTML body, and which
are attachments.

Rules, applied to every message alike:
  * the body is every `text/plain` and `text/html` part of the message itself, in MIME order, that is not
    marked `attachment`; a part with a file name is body text only while no body came before it (a named
    text part after the body is a file). Parts inside an attached message (`message/rfc822`) are that
    message's, not ours, so the attached message is one attachment;
  * each body part is recorded with the `multipart/alternative` it belongs to (the outermost one), so that
    alternatives give one text and one HTML and siblings in `multipart/mixed` give all of theirs (`bodies`);
  * in `multipart/related` only the root (the `start` parameter, else the first part) is body; its other
    text parts are resources, kept as attachments;
  * every other leaf part is an attachment, nameless binary parts included; a `message/delivery-status` report
    is one attachment; uuencoded files inside plain text (`begin 644 name` ... `end`) become attachments too;
  * a body part's charset comes from its Content-Type, else from an HTML `<meta charset>`, and is repaired by
    `charsets.decode_bytes`; `format=flowed` text (RFC 3676) is joined back into paragraphs;
  * nesting deeper than the limit and parts beyond the limit are skipped with a defect, never a crash.
"""
from __future__ import annotations

from collections.abc import Iterable

import binascii
import email.generator
import functools
import email.parser
import email.policy
import io
import quopri
import re
from dataclasses import dataclass, field, replace
from email.message import Message

from . import attachments as att
from .charsets import clean_text, decode_bytes
from .headers import decode_unstructured, raw_bytes, unfold
from .model import Attachment
from .params import main_value, parse_params
from .source import SourceIndex
from .structure import needs_boundary_repair, reparse_with_boundary, sniff_boundary

_BODY_TYPES = ('text/plain', 'text/html')
_META_CHARSET = re.compile(rb'<meta[^>]{0,200}?charset\s*=\s*["\']?\s*([A-Za-z0-9_.:-]{2,40})', re.I)


@dataclass(frozen=True)
class WalkLimits:
    max_depth: int
    max_parts: int


@dataclass(frozen=True)
class BodyText:
    """One body part's text: `kind` is `plain` or `html`; `alternative` names the outermost
    multipart/alternative it is inside (None for a part that is no alternative of another)."""
    kind: str
    text: str
    alternative: int | None


@dataclass(frozen=True)
class Place:
    """Where in the MIME tree a part is: inside which alternative, and whether it may be body at all (the
    parts of multipart/related other than its root may not)."""
    alternative: int | None = None
    body: bool = True


@dataclass
class WalkResult:
    bodies: list[BodyText] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)
    reports: list[Message] = field(default_factory=list)     # message/delivery-status parts, for classify
    enclosed: list[Message] = field(default_factory=list)    # attached messages and header blocks, for classify
    sources: SourceIndex | None = None                       # the bytes parts were parsed from, when known


_CONTENT_HEADERS = frozenset({'content-type', 'content-disposition', 'content-id', 'content-location',
                              'content-transfer-encoding'})


@dataclass(frozen=True)
class PartInfo:
    """The MIME facts of one part, read from its raw headers in a single pass; parameters parsed on demand."""
    content_type: str
    disposition: str
    content_type_raw: str | None
    disposition_raw: str | None
    content_id_raw: str | None
    location_raw: str | None
    transfer_encoding: str = ''

    @functools.cached_property
    def params(self) -> dict:
        return parse_params(self.content_type_raw)

    @functools.cached_property
    def disposition_params(self) -> dict:
        return parse_params(self.disposition_raw)


def describe(part: Message) -> PartInfo:
    found: dict[str, str] = {}
    for key, value in part.raw_items():
        name = key.lower()
        if name in _CONTENT_HEADERS and name not in found:
            found[name] = value
    content_type_raw = found.get('content-type')
    content_type = main_value(content_type_raw) if content_type_raw is not None else part.get_default_type()
    if content_type.count('/') != 1:
        content_type = 'text/plain'     # RFC 2045 5.2, as the standard library reads an invalid type
    disposition_raw = found.get('content-disposition')
    return PartInfo(content_type=content_type, disposition=main_value(disposition_raw),
                    content_type_raw=content_type_raw, disposition_raw=disposition_raw,
                    content_id_raw=found.get('content-id'), location_raw=found.get('content-location'),
                    transfer_encoding=main_value(found.get('content-transfer-encoding')))


def part_header(part: Message, name: str):
    """The first raw value of a header of a part (surrogate-escaped bytes kept), or None."""
    wanted = name.lower()
    for key, value in part.raw_items():
        if key.lower() == wanted:
            return value
    return None


def iter_parts(message: Message, limit: int):
    """Every part in MIME order, at most `limit` of them, without recursion (hostile nesting is deep)."""
    stack = [message]
    count = 0
    while stack and count < limit:
        part = stack.pop()
        count += 1
        yield part
        payload = part.get_payload() if part.is_multipart() else None
        if isinstance(payload, list):
            stack.extend(child for child in reversed(payload) if isinstance(child, Message))


class DeclaredCharsets:
    """Every charset the message's parts declare, in order, for decoding unlabelled 8-bit headers and text.

    Found on first use: most messages are decoded without ever needing them.
    """

    def __init__(self, message: Message, limit: int):
        self._message, self._limit, self._found = message, limit, None

    def __iter__(self):
        if self._found is None:
            self._found = _find_declared_charsets(self._message, self._limit)
        return iter(self._found)


def _find_declared_charsets(message: Message, limit: int) -> tuple[str, ...]:
    found = []
    for part in iter_parts(message, limit):
        param = parse_params(part_header(part, 'content-type')).get('charset')
        if param and param.data:
            label = param.data.decode('ascii', 'replace').strip().lower()
            if label and label not in found:
                found.append(label)
    return tuple(found)


def walk(message: Message, limits: WalkLimits, fallbacks: Iterable[str], source: bytes | None = None) -> WalkResult:
    """The message's body texts, attachments and reports; `source`, the bytes it was parsed from, keeps attached
    messages byte for byte."""
    result = WalkResult(sources=SourceIndex(message, source, limits.max_depth, flatten) if source is not None else None)
    taken_names: set[str] = set()
    stack: list[tuple[Message, int, Place]] = [(message, 0, Place())]
    seen = 0
    while stack:
        part, depth, place = stack.pop()
        seen += 1
        if seen > limits.max_parts:
            result.defects.append('more than %d MIME parts; the rest were not read' % limits.max_parts)
            break
        _visit(part, depth, place, stack, result, taken_names, limits, fallbacks)
    return result


def _visit(part: Message, depth: int, place: Place, stack: list, result: WalkResult, taken_names: set[str],
           limits: WalkLimits, fallbacks: Iterable[str]) -> None:
    info = describe(part)
    content_type = info.content_type
    if content_type == 'message/delivery-status':
        result.reports.append(part)
        _add(result, taken_names, _leaf_attachment(part, info, _flatten_body(part)))
        return
    if part.is_multipart() and content_type.startswith('message/'):
        _add(result, taken_names, _attached_message(part, info, fallbacks, result))
        return
    if content_type.startswith('multipart/') and needs_boundary_repair(part):
        part = _repair_boundary(part, result)
    if part.is_multipart():
        if info.disposition == 'attachment' and depth > 0:
            _add(result, taken_names, _leaf_attachment(part, info, _flatten_body(part)))
            return
        if depth >= limits.max_depth:
            result.defects.append('MIME nesting deeper than %d; inner parts were not read' % limits.max_depth)
            return
        children = [child for child in part.get_payload() if isinstance(child, Message)]
        places = _child_places(part, info, place, children)
        stack.extend((child, depth + 1, where) for child, where in reversed(list(zip(children, places))))
        return
    _visit_leaf(part, info, place, result, taken_names, fallbacks, top_level=depth == 0)


def _child_places(part: Message, info: PartInfo, place: Place, children: list[Message]) -> list[Place]:
    """The place of each child: an alternative's children share its identity (the outermost one wins); of a
    multipart/related only the root stays body (RFC 2387 3.2: the `start` part, else the first)."""
    if info.content_type == 'multipart/alternative' and place.alternative is None:
        place = Place(alternative=id(part), body=place.body)
    if info.content_type != 'multipart/related' or len(children) < 2:
        return [place] * len(children)
    root = _related_root(info, children)
    resource = Place(alternative=place.alternative, body=False)
    return [place if i == root else resource for i in range(len(children))]


def _related_root(info: PartInfo, children: list[Message]) -> int:
    start = info.params.get('start') if 'start' in str(info.content_type_raw).lower() else None
    wanted = _content_id(start.data.decode('utf-8', 'replace')) if start else None
    if wanted:
        for i, child in enumerate(children):
            if _content_id(part_header(child, 'content-id')) == wanted:
                return i
    return 0


def _repair_boundary(part: Message, result: WalkResult) -> Message:
    boundary = sniff_boundary(part.get_payload())
    fixed = reparse_with_boundary(part, boundary) if boundary else None
    if fixed is None:
        return part
    result.defects.append('multipart boundary did not match the body; recovered delimiter --%s' % boundary)
    return fixed


def _visit_leaf(part: Message, info: PartInfo, place: Place, result: WalkResult, taken_names: set[str],
                fallbacks: Iterable[str], top_level: bool = False) -> None:
    content_type, disposition = info.content_type, info.disposition
    filename = _declared_filename(info, fallbacks)
    is_body_type = content_type in _BODY_TYPES or content_type.startswith('multipart/')   # unsplittable: text
    if is_body_type and place.body and disposition != 'attachment' and not filename:
        _add_body(part, content_type, info.params, place, result, taken_names, fallbacks)
        return
    if content_type in _BODY_TYPES and place.body and not result.bodies and (
            disposition == 'inline' or (top_level and disposition != 'attachment')):
        # RFC 2183: an inline text part is shown in the body; so is a single-part message's only text, whatever
        # its name. Having a name, it is a file as well. A named text part after the body is a file only.
        _add_body(part, content_type, info.params, place, result, taken_names, fallbacks)
    if content_type == 'text/rfc822-headers':
        result.enclosed.append(_headers_only(part))
    if content_type == 'message/rfc822':      # an attached message the parser could not open (encoded, broken)
        attachment = _encoded_message(part, info, filename, fallbacks, result)
    else:
        attachment = _leaf_attachment(part, info, _payload_bytes(part), filename)
    _add(result, taken_names, attachment)
    if att.is_tnef(attachment.content_type, attachment.filename):
        files, problem = att.unpack_tnef(attachment.data)
        for found in files:
            _add(result, taken_names, found)
        if problem:
            result.defects.append(problem)


def _add(result: WalkResult, taken_names: set[str], attachment: Attachment) -> None:
    """Keep an attachment; a name made from its MIME type is numbered when an earlier part has it already."""
    if attachment.filename in taken_names and attachment.filename == att.type_filename(attachment.content_type):
        attachment = replace(attachment, filename=att.number_repeated(attachment.filename, taken_names))
    result.attachments.append(attachment)
    taken_names.add(attachment.filename)


def _add_body(part: Message, content_type: str, params: dict, place: Place, result: WalkResult,
              taken_names: set[str], fallbacks) -> None:
    data = _payload_bytes(part)
    charset_param = params.get('charset')
    charset = charset_param.data.decode('ascii', 'replace') if charset_param else None
    if content_type == 'text/html' and not charset:
        found = _META_CHARSET.search(data[:4096])
        charset = found.group(1).decode('ascii') if found else None
    if content_type == 'text/plain' and b'begin ' in data:
        data, files = att.extract_uuencoded(data)
        for found in files:
            _add(result, taken_names, found)
    text, note = decode_bytes(data, charset, fallbacks, detect_cjk=True)
    if note:
        result.defects.append('%s part: %s' % (content_type, note))
    if content_type == 'text/html':
        result.bodies.append(BodyText('html', text, place.alternative))
        return
    if _is_flowed(params):
        text = unflow(text, _param_text(params, 'delsp') == 'yes')
    result.bodies.append(BodyText('plain', text, place.alternative))


def _is_flowed(params: dict) -> bool:
    return _param_text(params, 'format') == 'flowed'


def _param_text(params: dict, name: str) -> str:
    value = params.get(name)
    return value.data.decode('ascii', 'replace').strip().lower() if value else ''


def unflow(text: str, delete_space: bool) -> str:
    """RFC 3676 4.2-4.5: a line ending in a space continues on the next line of the same quote depth; the
    space-stuffing added before lines starting with a space, `>` or `From ` is removed; `-- ` stays a
    signature separator. With DelSp=yes the soft-break space itself is deleted."""
    paragraphs: list[tuple[int, list[str]]] = []
    continuing = False
    for line in text.replace('\r\n', '\n').split('\n'):
        depth = len(line) - len(line.lstrip('>'))
        content = line[depth:]
        if content.startswith(' '):
            content = content[1:]
        flowed = content.endswith(' ') and content != '-- '
        if flowed and delete_space:
            content = content[:-1]
        if continuing and paragraphs and paragraphs[-1][0] == depth:
            paragraphs[-1][1].append(content)
        else:
            paragraphs.append((depth, [content]))
        continuing = flowed
    return '\n'.join(_quoted(depth, ''.join(pieces)) for depth, pieces in paragraphs)


def _quoted(depth: int, text: str) -> str:
    if not depth:
        return text
    return '>' * depth + (' ' + text if text else '')


def _payload_bytes(part: Message) -> bytes:
    """The decoded payload of a leaf part (base64, quoted-printable, uuencode; 8-bit bytes as sent)."""
    try:
        data = part.get_payload(decode=True)
    except (ValueError, TypeError, LookupError, UnicodeError):
        data = None
    if data is None:
        payload = part.get_payload()
        data = payload.encode('utf-8', 'surrogateescape') if isinstance(payload, str) else b''
    return data


def _flatten_body(part: Message) -> bytes:
    """The body of a structured part (a delivery report, an attached multipart) as it was on the wire."""
    if part.is_multipart():
        return b''.join(flatten(child) for child in part.get_payload() if isinstance(child, Message))
    return _payload_bytes(part)


def flatten(message: Message) -> bytes:
    """A message or part back to bytes, 8-bit bytes restored, `From ` lines not mangled."""
    buffer = io.BytesIO()
    try:
        email.generator.BytesGenerator(buffer, mangle_from_=False, policy=email.policy.compat32).flatten(message)
        return buffer.getvalue()
    except (LookupError, UnicodeError, TypeError, ValueError, RecursionError):     # nested past the stack's depth
        headers = ''.join('%s: %s\n' % (k, v) for k, v in message.raw_items())
        payload = message.get_payload()
        body = payload if isinstance(payload, str) else ''
        return (headers + '\n' + body).encode('utf-8', 'surrogateescape')


def _leaf_attachment(part: Message, info: PartInfo, data: bytes, filename: str = '',
                     content_type: str | None = None) -> Attachment:
    content_type = content_type or info.content_type
    content_id = _content_id(info.content_id_raw)
    name = (filename or att.location_filename(info.location_raw)
            or att.content_id_filename(content_id, content_type) or att.type_filename(content_type))
    inline = info.disposition == 'inline' or (not info.disposition and content_id is not None)
    return att.make_attachment(data, name, content_type, content_id, inline)


def _attached_message(part: Message, info: PartInfo, fallbacks, result: WalkResult) -> Attachment:
    inner = part.get_payload(0) if part.get_payload() else None
    data = attached_bytes(inner, result) if isinstance(inner, Message) else b''
    if info.transfer_encoding in ('base64', 'quoted-printable'):
        # RFC 2046 forbids encoding message/rfc822, mailers do it anyway: the parser read the encoded text as a
        # message. Decode it and read the real one.
        data = decode_transfer_encoding(data, info.transfer_encoding)
        inner = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(data)
    if isinstance(inner, Message):
        result.enclosed.append(inner)
    filename = _declared_filename(info, fallbacks)
    if not filename and info.content_type == 'message/rfc822' and isinstance(inner, Message):
        filename = att.message_filename(decode_unstructured(part_header(inner, 'subject'), fallbacks))
    return _leaf_attachment(part, info, data, filename)


def attached_bytes(inner: Message, result: WalkResult) -> bytes:
    """An attached message as it was sent, else flattened again."""
    original = result.sources.bytes_of(inner) if result.sources is not None else None
    return original if original is not None else flatten(inner)


def decode_transfer_encoding(data: bytes, encoding: str) -> bytes:
    if encoding == 'base64':
        cleaned = re.sub(rb'[^A-Za-z0-9+/]', b'', data)
        cleaned = cleaned[:len(cleaned) - len(cleaned) % 4] if len(cleaned) % 4 == 1 else cleaned
        return binascii.a2b_base64(cleaned + b'=' * (-len(cleaned) % 4))
    return quopri.decodestring(data)


def _encoded_message(part: Message, info: PartInfo, filename: str, fallbacks, result: WalkResult) -> Attachment:
    data = _payload_bytes(part)
    inner = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(data)
    result.enclosed.append(inner)
    if not filename:
        filename = att.message_filename(decode_unstructured(part_header(inner, 'subject'), fallbacks))
    return _leaf_attachment(part, info, data, filename, 'message/rfc822')


def _headers_only(part: Message) -> Message:
    return email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(_payload_bytes(part))


def _declared_filename(info: PartInfo, fallbacks) -> str:
    if not _may_name(info.disposition_raw, 'filename') and not _may_name(info.content_type_raw, 'name'):
        return ''                 # most body parts: no parameter of that name, nothing to parse
    return (att.param_filename(info.disposition_params.get('filename'), fallbacks)
            or att.param_filename(info.params.get('name'), fallbacks))


def _may_name(raw_header, parameter: str) -> bool:
    """Whether a raw header could hold the parameter (also as RFC 2231 `name*0*=`): a cheap test first."""
    return raw_header is not None and parameter in str(raw_header).lower()


def _content_id(value) -> str | None:
    if value is None:
        return None
    text = clean_text(unfold(raw_bytes(value)).decode('utf-8', 'replace').replace('\ufffd', '')).strip()
    text = text.strip('<>').strip()
    return text or None
