"""Outlook `.msg` files (MS-OXMSG: a MAPI message in an OLE2 compound file, read with olefile) turned into the
RFC 5322/MIME message they hold, so that the ordinary parser and all its repairs read them.

  * headers: the transport headers Outlook kept (PidTagTransportMessageHeaders, 0x007D) without their MIME
    fields, else headers written from the MAPI properties (sender, recipients, subject, dates, identifiers);
  * bodies: PidTagBody (0x1000) as text/plain and PidTagHtml (0x1013, in the code page of PidTagInternetCodepage
    0x3FDE) as text/html, as multipart/alternative when both are there. Compressed RTF (0x1009) is not read:
    a message with only an RTF body gets a defect, not a guess;
  * attachments (`__attach_version1.0_#N`): their bytes (0x3701), names (0x3707, 0x3704, 0x3001), MIME type
    (0x370E) and Content-ID (0x3712); an embedded message (`__substg1.0_3701000D`) becomes message/rfc822.

Strings are PtypString (001F, UTF-16LE) or PtypString8 (001E, in the message's code page 0x3FFD). Anything that
is not a readable compound file or not a message raises `UnreadableMsg` with the reason.
"""
from __future__ import annotations

import base64
import codecs
import datetime
import email.utils
import io
import re
import struct
from dataclasses import dataclass, field
from urllib.parse import quote

import olefile

OLE_MAGIC = b'\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1'
MAX_EMBEDDING_DEPTH = 10
MAX_ATTACHMENTS = 2048          # MS-OXMSG 2.2.2
MAX_RECIPIENTS = 2048

PT_LONG, PT_SYSTIME = 0x0003, 0x0040
PT_STRING8, PT_UNICODE, PT_BINARY, PT_OBJECT = 0x001E, 0x001F, 0x0102, 0x000D
# Property ids (MS-OXPROPS).
SUBJECT, CLIENT_SUBMIT_TIME, SENT_REPRESENTING_NAME, SENT_REPRESENTING_EMAIL = 0x0037, 0x0039, 0x0042, 0x0065
TRANSPORT_HEADERS, SENDER_NAME, SENDER_EMAIL, SENDER_ADDRESS_TYPE = 0x007D, 0x0C1A, 0x0C1F, 0x0C1E
SENDER_SMTP, SENT_REPRESENTING_SMTP, DELIVERY_TIME = 0x5D01, 0x5D02, 0x0E06
BODY, RTF_COMPRESSED, HTML, MESSAGE_ID, IN_REPLY_TO, REFERENCES = 0x1000, 0x1009, 0x1013, 0x1035, 0x1042, 0x1039
INTERNET_CODEPAGE, MESSAGE_CODEPAGE = 0x3FDE, 0x3FFD
RECIPIENT_TYPE, DISPLAY_NAME, EMAIL_ADDRESS, SMTP_ADDRESS = 0x0C15, 0x3001, 0x3003, 0x39FE
ATTACH_DATA, ATTACH_FILENAME, ATTACH_LONG_FILENAME, ATTACH_METHOD = 0x3701, 0x3704, 0x3707, 0x3705
ATTACH_MIME_TAG, ATTACH_CONTENT_ID = 0x370E, 0x3712
ATTACH_EMBEDDED_MSG = 5
RECIPIENT_HEADERS = {1: 'To', 2: 'Cc'}           # 3 (Bcc) is not written into a received message's header
_MIME_FIELD = re.compile(r'(?im)^(?:content-[a-z-]*|mime-version)[ \t]*:.*(?:\r?\n[ \t].*)*\r?\n?')
_LINE_BREAKS = re.compile(r'[\r\n]+')
# Windows code pages that Python does not know as `cpNNNNN`.
_CODE_PAGE_LABELS = {20127: 'us-ascii', 20866: 'koi8-r', 21866: 'koi8-u', 50220: 'iso-2022-jp', 50221: 'iso-2022-jp',
                     50222: 'iso-2022-jp', 51932: 'euc-jp', 51949: 'euc-kr', 52936: 'hz-gb-2312', 54936: 'gb18030',
                     65000: 'utf-7', 65001: 'utf-8', 1200: 'utf-16-le', 1201: 'utf-16-be', 936: 'gbk', 950: 'big5',
                     932: 'shift_jis', 949: 'ks_c_5601-1987'}
_OLE_ERRORS = (OSError, ValueError, IndexError, KeyError, TypeError, AttributeError, struct.error, OverflowError,
               RecursionError, AssertionError, ZeroDivisionError, UnicodeError, MemoryError)


class UnreadableMsg(ValueError):
    """The bytes start like an OLE2 compound file but are no Outlook message that can be read."""


@dataclass(frozen=True)
class Properties:
    """One MAPI object's properties: fixed-size values by (id, type), variable ones read on demand."""
    fixed: dict
    streams: dict            # property id -> (type, stream path)


@dataclass
class _Conversion:
    """One file's conversion: its substreams by parent storage (listed once: a hostile file may hold very many
    entries), the defects found, and boundaries unique within the message (bodies are base64, so they cannot
    contain them)."""
    substreams: dict
    count: int = 0
    defects: list = field(default_factory=list)

    def boundary(self) -> str:
        self.count += 1
        return '=_postdesk_msg_%d_=' % self.count


def is_outlook_msg(raw: bytes) -> bool:
    return raw.startswith(OLE_MAGIC)


def msg_to_mime(raw: bytes) -> tuple[bytes, list[str]]:
    """The RFC 5322 message an Outlook .msg file holds, and the defects found reading it."""
    try:
        ole = olefile.OleFileIO(io.BytesIO(raw))
    except _OLE_ERRORS as exc:
        raise UnreadableMsg('an Outlook .msg file that cannot be read (%s: %s)' % (type(exc).__name__, exc)) from None
    try:
        writer = _Conversion(list_substreams(ole))
        if not ole.exists('__properties_version1.0'):
            raise UnreadableMsg('an OLE2 compound file (Office document?) that is not an Outlook message: '
                                'no MAPI property stream')
        message = _message_bytes(ole, [], writer, depth=0)
    except _OLE_ERRORS as exc:
        raise UnreadableMsg('an Outlook .msg file that cannot be read (%s: %s)' % (type(exc).__name__, exc)) from None
    finally:
        ole.close()
    return message, writer.defects


# ------------------------------------------------------------------------------------------ properties

def list_substreams(ole: olefile.OleFileIO) -> dict[tuple, list]:
    """Every `__substg1.0_` stream, by the path of the storage that holds it."""
    found: dict[tuple, list] = {}
    for entry in ole.listdir(streams=True, storages=False):
        if entry[-1].startswith('__substg1.0_'):
            found.setdefault(tuple(entry[:-1]), []).append(entry)
    return found


def read_properties(ole: olefile.OleFileIO, base: list[str], header_size: int, conversion: _Conversion) -> Properties:
    """The property stream of the object at `base` (MS-OXMSG 2.4) and the substreams it has."""
    data = _read(ole, base + ['__properties_version1.0'])
    fixed = {}
    for offset in range(header_size, len(data) - 15, 16):
        tag, _flags, value = struct.unpack_from('<II8s', data, offset)
        fixed[(tag >> 16, tag & 0xFFFF)] = value
    streams = {}
    for entry in conversion.substreams.get(tuple(base), ()):
        code = entry[-1][12:20]
        if len(code) == 8 and all(c in '0123456789ABCDEFabcdef' for c in code):
            streams.setdefault(int(code[:4], 16), (int(code[4:], 16), entry))
    return Properties(fixed, streams)


def _read(ole: olefile.OleFileIO, path: list[str]) -> bytes:
    if not ole.exists('/'.join(path)) or ole.get_type(path) != olefile.STGTY_STREAM:
        return b''
    return ole.openstream(path).read()


def _string(ole, props: Properties, prop_id: int, code_page: str = 'cp1252') -> str:
    found = props.streams.get(prop_id)
    if found is None:
        return ''
    kind, path = found
    data = _read(ole, path)
    if kind == PT_UNICODE:
        text = data.decode('utf-16-le', 'replace')
    elif kind == PT_STRING8:
        text = data.decode(_codec(code_page), 'replace')
    else:
        return ''
    return text.replace('\x00', '').replace('\ufffd', '')


def _binary(ole, props: Properties, prop_id: int) -> bytes | None:
    found = props.streams.get(prop_id)
    if found is None:
        return None
    kind, path = found
    if kind in (PT_UNICODE, PT_STRING8):      # some writers store PidTagHtml as a string
        return _read(ole, path).decode('utf-16-le' if kind == PT_UNICODE else 'cp1252', 'replace').encode('utf-8')
    return _read(ole, path) if kind == PT_BINARY else None


def _long(props: Properties, prop_id: int) -> int | None:
    value = props.fixed.get((prop_id, PT_LONG))
    return struct.unpack('<I', value[:4])[0] if value else None


def _time(props: Properties, prop_id: int) -> datetime.datetime | None:
    """A PtypTime: 100-nanosecond intervals since 1601-01-01 UTC."""
    value = props.fixed.get((prop_id, PT_SYSTIME))
    if not value:
        return None
    ticks = struct.unpack('<Q', value)[0]
    try:
        return datetime.datetime(1601, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(microseconds=ticks // 10)
    except OverflowError:
        return None


def code_page_label(code_page: int | None) -> str | None:
    """A charset label for a Windows code page number: 1252 -> cp1252, 28591 -> iso-8859-1, 65001 -> utf-8."""
    if not code_page:
        return None
    if code_page in _CODE_PAGE_LABELS:
        return _CODE_PAGE_LABELS[code_page]
    if 28591 <= code_page <= 28606:
        return 'iso-8859-%d' % (code_page - 28590)
    return 'cp%d' % code_page


def _codec(label: str) -> str:
    try:
        return codecs.lookup(label).name
    except LookupError:
        return 'cp1252'


# ------------------------------------------------------------------------------------------ the message

def _message_bytes(ole, base: list[str], writer: _Conversion, depth: int) -> bytes:
    props = read_properties(ole, base, 32 if not base else 24, writer)
    code_page = code_page_label(_long(props, MESSAGE_CODEPAGE) or _long(props, INTERNET_CODEPAGE)) or 'cp1252'
    headers = _transport_headers(ole, props, code_page) or _mapi_headers(ole, props, base, code_page, writer)
    parts = _body_parts(ole, props, writer)
    parts += _attachment_parts(ole, base, writer, depth)
    if not parts:
        parts = [_part('text/plain; charset=utf-8', b'')]
    if len(parts) == 1:
        body = parts[0]
    else:
        body = _multipart('mixed', parts, writer)
    return headers.encode('utf-8', 'replace') + b'MIME-Version: 1.0\r\n' + body


def _transport_headers(ole, props: Properties, code_page: str) -> str:
    """The Internet headers as received, without the MIME fields that described the original body."""
    text = _string(ole, props, TRANSPORT_HEADERS, code_page).replace('\r\n', '\n')
    text = text.split('\n\n', 1)[0].strip('\n')
    if ':' not in text:
        return ''
    text = _MIME_FIELD.sub('', text + '\n')
    return text.replace('\n', '\r\n') if text.strip() else ''


def _mapi_headers(ole, props: Properties, base: list[str], code_page: str, conversion: _Conversion) -> str:
    lines = []
    sender = _sender(ole, props, code_page)
    if sender:
        lines.append(('From', sender))
    recipients = _recipients(ole, base, code_page, conversion)
    for kind, name in RECIPIENT_HEADERS.items():
        if recipients.get(kind):
            lines.append((name, ', '.join(recipients[kind])))
    lines.append(('Subject', _string(ole, props, SUBJECT, code_page)))
    date = _time(props, CLIENT_SUBMIT_TIME) or _time(props, DELIVERY_TIME)
    if date:
        lines.append(('Date', email.utils.format_datetime(date)))
    for prop_id, name in ((MESSAGE_ID, 'Message-ID'), (IN_REPLY_TO, 'In-Reply-To'), (REFERENCES, 'References')):
        value = _string(ole, props, prop_id, code_page)
        if value:
            lines.append((name, value))
    return ''.join('%s: %s\r\n' % (name, _LINE_BREAKS.sub(' ', value).strip()) for name, value in lines)


def _sender(ole, props: Properties, code_page: str) -> str:
    name = _string(ole, props, SENDER_NAME, code_page) or _string(ole, props, SENT_REPRESENTING_NAME, code_page)
    address = (_string(ole, props, SENDER_SMTP, code_page) or _string(ole, props, SENT_REPRESENTING_SMTP, code_page))
    if not address and _string(ole, props, SENDER_ADDRESS_TYPE, code_page).upper() != 'EX':
        address = _string(ole, props, SENDER_EMAIL, code_page) or _string(ole, props, SENT_REPRESENTING_EMAIL, code_page)
    return _mailbox(name, address)


def _mailbox(name: str, address: str) -> str:
    name, address = _LINE_BREAKS.sub(' ', name).strip(), _LINE_BREAKS.sub(' ', address).strip()
    if not address:
        return email.utils.formataddr((name, '')) if name else ''
    return email.utils.formataddr((name, address), charset='utf-8')


def _recipients(ole, base: list[str], code_page: str, conversion: _Conversion) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for index in range(MAX_RECIPIENTS):
        storage = base + ['__recip_version1.0_#%08X' % index]
        if not ole.exists('/'.join(storage)):
            break
        props = read_properties(ole, storage, 8, conversion)
        address = _string(ole, props, SMTP_ADDRESS, code_page)
        if not address and '@' in _string(ole, props, EMAIL_ADDRESS, code_page):
            address = _string(ole, props, EMAIL_ADDRESS, code_page)
        mailbox = _mailbox(_string(ole, props, DISPLAY_NAME, code_page), address)
        if mailbox:
            found.setdefault(_long(props, RECIPIENT_TYPE) or 1, []).append(mailbox)
    return found


def _body_parts(ole, props: Properties, writer: _Conversion) -> list[bytes]:
    text = _string(ole, props, BODY).replace('\r\n', '\n')
    html = _binary(ole, props, HTML)
    alternatives = []
    if text:
        alternatives.append(_part('text/plain; charset=utf-8', text.encode('utf-8')))
    if html:
        charset = code_page_label(_long(props, INTERNET_CODEPAGE))
        alternatives.append(_part('text/html' + ('; charset=%s' % charset if charset else ''), html.rstrip(b'\x00')))
    if not alternatives and RTF_COMPRESSED in props.streams:
        writer.defects.append('Outlook message with only a compressed RTF body, which is not converted')
    if len(alternatives) == 2:
        return [_multipart('alternative', alternatives, writer)]
    return alternatives


def _attachment_parts(ole, base: list[str], writer: _Conversion, depth: int) -> list[bytes]:
    parts = []
    for index in range(MAX_ATTACHMENTS):
        storage = base + ['__attach_version1.0_#%08X' % index]
        if not ole.exists('/'.join(storage)):
            break
        props = read_properties(ole, storage, 8, writer)
        embedded = storage + ['__substg1.0_3701000D']
        if _long(props, ATTACH_METHOD) == ATTACH_EMBEDDED_MSG or ole.exists('/'.join(embedded)):
            if depth >= MAX_EMBEDDING_DEPTH:
                writer.defects.append('Outlook messages embedded deeper than %d; inner ones left out' % depth)
                continue
            if ole.exists('/'.join(embedded)):
                inner = _message_bytes(ole, embedded, writer, depth + 1)
                parts.append(b'Content-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n' + inner)
            continue
        parts.append(_attachment(ole, props))
    return parts


def _attachment(ole, props: Properties) -> bytes:
    data = _binary(ole, props, ATTACH_DATA) or b''
    name = (_string(ole, props, ATTACH_LONG_FILENAME) or _string(ole, props, ATTACH_FILENAME)
            or _string(ole, props, DISPLAY_NAME))
    mime_type = _string(ole, props, ATTACH_MIME_TAG).strip().lower()
    if mime_type.count('/') != 1 or not re.fullmatch(r'[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+', mime_type):
        mime_type = 'application/octet-stream'
    content_id = _LINE_BREAKS.sub('', _string(ole, props, ATTACH_CONTENT_ID)).strip().strip('<>')
    headers = 'Content-Type: %s\r\n' % mime_type
    disposition = 'inline' if content_id else 'attachment'
    if name:
        disposition += "; filename*=utf-8''" + _percent(name)
    headers += 'Content-Disposition: %s\r\n' % disposition
    if content_id and re.fullmatch(r'[^\s<>()\\,;:"]+', content_id):
        headers += 'Content-ID: <%s>\r\n' % content_id
    return _encoded(headers, data)


def _percent(text: str) -> str:
    return quote(_LINE_BREAKS.sub(' ', text), safe='')


def _part(content_type: str, data: bytes) -> bytes:
    return _encoded('Content-Type: %s\r\n' % content_type, data)


def _encoded(headers: str, data: bytes) -> bytes:
    return (headers + 'Content-Transfer-Encoding: base64\r\n\r\n').encode('ascii') + base64.encodebytes(data)


def _multipart(subtype: str, parts: list[bytes], writer: _Conversion) -> bytes:
    boundary = writer.boundary()
    out = [('Content-Type: multipart/%s; boundary="%s"\r\n\r\n' % (subtype, boundary)).encode('ascii')]
    for part in parts:
        out.append(b'--' + boundary.encode('ascii') + b'\r\n' + part + b'\r\n')
    out.append(b'--' + boundary.encode('ascii') + b'--\r\n')
    return b''.join(out)
