"""Attachments: stable file names, decoded bytes, sha256, and Outlook TNEF (`winmail.dat`) unpacking.

A part's file name is taken, in order, from: Content-Disposition `filename` (RFC 2183, RFC 2231 extended and
continued values, RFC 2047 encoded words as real mail writes them), Content-Type `name`, the last path segment of
Content-Location (RFC 2557), the Content-ID's local part (RFC 2392), and last a name made from the MIME type
(`image.png`, `calendar.ics`, `attachment.bin`), numbered when it repeats. Attached messages (`message/rfc822`)
are named after their own Subject. Never a random name: the same message always gives the same names.
A Content-ID names a file only when its local part ends in a known extension (`image001.png@01D2...`): ids such
as `32497.1617621278.2@host` are no file names, and the part is named from its type instead.
TNEF is unpacked with tnefparse; the original `winmail.dat` is kept next to the files it held. uuencoded files
inside plain text (the `begin MODE NAME` ... `end` blocks of POSIX uuencode) become attachments of their own.
"""
from __future__ import annotations

from collections.abc import Iterable

import binascii
import hashlib
import logging
import mimetypes
import posixpath
import re
from urllib.parse import unquote, urlsplit

from .charsets import clean_text, decode_bytes
from .headers import decode_header, raw_bytes, unfold
from .model import Attachment
from .params import ParamValue

log = logging.getLogger(__name__)

_BUILTIN_TYPES = mimetypes.MimeTypes(filenames=())   # the standard library's table only: stable on every machine
_EXTENSIONS = {
    'image/jpeg': '.jpg', 'image/jpg': '.jpg', 'image/pjpeg': '.jpg', 'image/png': '.png', 'image/gif': '.gif',
    'text/plain': '.txt', 'text/html': '.html', 'text/calendar': '.ics', 'text/x-vcard': '.vcf', 'text/vcard': '.vcf',
    'message/rfc822': '.eml', 'message/delivery-status': '.txt', 'text/rfc822-headers': '.txt',
    'message/disposition-notification': '.txt', 'message/feedback-report': '.txt',
    'application/octet-stream': '.bin', 'application/pgp-signature': '.asc', 'application/pkcs7-signature': '.p7s',
    'application/x-pkcs7-signature': '.p7s', 'application/pkcs7-mime': '.p7m', 'application/ms-tnef': '.dat',
    'application/vnd.ms-tnef': '.dat', 'text/enriched': '.txt', 'text/richtext': '.txt', 'text/rtf': '.rtf',
    'application/rtf': '.rtf', 'audio/mpeg': '.mp3', 'video/quicktime': '.mov',
    'application/vnd.openxmlformats-officedocument.wordprocessingml.document': '.docx',
    'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet': '.xlsx',
    'application/vnd.openxmlformats-officedocument.presentationml.presentation': '.pptx',
    'application/msword': '.doc', 'application/vnd.ms-excel': '.xls', 'application/vnd.ms-powerpoint': '.ppt',
    'application/vnd.oasis.opendocument.text': '.odt', 'application/vnd.oasis.opendocument.spreadsheet': '.ods',
    'application/vnd.oasis.opendocument.presentation': '.odp', 'application/zip': '.zip',
    'application/x-zip-compressed': '.zip', 'application/x-7z-compressed': '.7z', 'application/x-rar-compressed': '.rar',
    'application/vnd.rar': '.rar', 'application/gzip': '.gz', 'text/csv': '.csv', 'application/json': '.json',
    'image/webp': '.webp', 'image/heic': '.heic', 'image/svg+xml': '.svg', 'image/tiff': '.tif', 'image/bmp': '.bmp',
    'audio/ogg': '.ogg', 'audio/wav': '.wav', 'video/mp4': '.mp4', 'application/pdf': '.pdf',
    'application/vnd.ms-outlook': '.msg', 'text/xml': '.xml', 'application/xml': '.xml',
}
_STEMS = {'text/calendar': 'calendar', 'message/delivery-status': 'delivery-status',
          'text/rfc822-headers': 'message-headers', 'message/disposition-notification': 'disposition-notification',
          'message/feedback-report': 'feedback-report', 'application/pgp-signature': 'signature',
          'application/pkcs7-signature': 'smime', 'application/x-pkcs7-signature': 'smime',
          'application/pkcs7-mime': 'smime', 'application/ms-tnef': 'winmail', 'application/vnd.ms-tnef': 'winmail',
          'text/x-vcard': 'contact', 'text/vcard': 'contact'}
_KNOWN_EXTENSIONS = frozenset(_EXTENSIONS.values()) | {'.jpeg', '.jpe', '.htm', '.tiff', '.eml', '.msg'}
_MAIN_STEMS = {'image': 'image', 'audio': 'audio', 'video': 'video', 'text': 'text', 'message': 'message'}
_HAS_EXTENSION = re.compile(r'\.[A-Za-z0-9]{1,5}$')
_UNSAFE_NAME_CHARS = re.compile(r'[\x00-\x1f\x7f]+')
_TNEF_TYPES = {'application/ms-tnef', 'application/vnd.ms-tnef'}
MAX_NAME_LENGTH = 255


def make_attachment(data: bytes, filename: str, content_type: str, content_id: str | None,
                    inline: bool) -> Attachment:
    return Attachment(filename=filename, content_type=content_type, content_id=content_id, inline=inline,
                      sha256=hashlib.sha256(data).hexdigest(), data=data)


def clean_filename(name: str) -> str:
    """A file name without directories, control characters or surrounding white space."""
    name = _UNSAFE_NAME_CHARS.sub(' ', clean_text(name))
    name = name.replace('\\', '/').rsplit('/', 1)[-1]
    name = re.sub(r'\s+', ' ', name).strip().strip('.').strip()
    return name[:MAX_NAME_LENGTH]


def param_filename(param: ParamValue | None, fallbacks: Iterable[str]) -> str:
    """A `filename`/`name` parameter as text: RFC 2231 charset first, then RFC 2047 and 8-bit repair."""
    if param is None:
        return ''
    if param.extended:
        text, _ = decode_bytes(param.data, param.charset, fallbacks)
        if '=?' in text:
            text = decode_header(text.encode('utf-8'), fallbacks)
        return clean_filename(text)
    return clean_filename(decode_header(param.data, fallbacks))


def location_filename(value) -> str:
    """The last path segment of a Content-Location URL."""
    if not value:
        return ''
    text = unfold(raw_bytes(value)).decode('utf-8', 'replace').strip()
    try:
        path = urlsplit(text).path or text
    except ValueError:
        path = text
    return clean_filename(unquote(posixpath.basename(path.rstrip('/'))))


def content_id_filename(content_id: str | None, content_type: str) -> str:
    """`<image001.png@01D2...>` gives `image001.png`; a local part without a known extension gives nothing."""
    if not content_id:
        return ''
    local = clean_filename(content_id.split('@', 1)[0])
    return local if has_known_extension(local) else ''


def has_known_extension(name: str) -> bool:
    """True for `logo.png`, `report.pdf`; False for `logo`, `32497.1617621278.2`, `part1.06090408`."""
    found = _HAS_EXTENSION.search(name)
    if not found:
        return False
    extension = found.group().lower()
    return extension in _KNOWN_EXTENSIONS or _BUILTIN_TYPES.guess_type('x' + extension, strict=False)[0] is not None


def extension_for(content_type: str) -> str:
    return _EXTENSIONS.get(content_type) or _BUILTIN_TYPES.guess_extension(content_type, strict=False) or '.bin'


def type_filename(content_type: str) -> str:
    """A readable name made from the MIME type alone: `image.png`, `calendar.ics`, `attachment.pdf`."""
    stem = _STEMS.get(content_type) or _MAIN_STEMS.get(content_type.split('/', 1)[0], 'attachment')
    return stem + extension_for(content_type)


def message_filename(subject: str) -> str:
    """An attached message is named after its Subject: `Your order.eml`."""
    name = clean_filename(subject.replace('/', '-').replace('\\', '-'))[:MAX_NAME_LENGTH - 4]
    return (name or 'message') + '.eml'


def number_repeated(name: str, taken: set[str]) -> str:
    """`image.png` again becomes `image1.png`, then `image2.png`."""
    if name not in taken:
        return name
    stem, dot, ext = name.rpartition('.')
    if not dot:
        stem, ext = name, ''
    for counter in range(1, 10000):
        candidate = '%s%d%s' % (stem, counter, '.' + ext if dot else '')
        if candidate not in taken:
            return candidate
    return name


def is_tnef(content_type: str, filename: str) -> bool:
    return content_type in _TNEF_TYPES or filename.lower() == 'winmail.dat'


def unpack_tnef(data: bytes) -> tuple[list[Attachment], str | None]:
    """The files inside an Outlook TNEF stream, and a defect note when it cannot be read."""
    try:
        import tnefparse
        tnef = tnefparse.TNEF(data, do_checksum=False)
    except Exception as exc:   # tnefparse raises bare ValueError/struct.error/IndexError on malformed input
        return [], 'TNEF not readable: %s' % type(exc).__name__
    found, problem = [], None
    for item in tnef.attachments:
        payload = item.data if isinstance(item.data, bytes) else bytes(item.data or b'')
        name = _tnef_name(item)
        if not payload and not name:
            problem = 'TNEF incomplete: an attachment without name or data was skipped (winmail.dat cut short?)'
            continue
        name = name or type_filename('application/octet-stream')
        content_type = _BUILTIN_TYPES.guess_type(name, strict=False)[0] or 'application/octet-stream'
        found.append(make_attachment(payload, name, content_type, None, False))
    return found, problem


def _tnef_name(item) -> str:
    for getter in (getattr(item, 'long_filename', None), lambda: getattr(item, 'name', None)):
        try:
            name = getter() if getter else None
        except Exception:   # tnefparse decodes names lazily and raises on broken ones
            name = None
        if isinstance(name, bytes):
            name = decode_bytes(name, None)[0]
        if name:
            cleaned = clean_filename(name)
            if cleaned:
                return cleaned
    return ''


_UU_BEGIN = re.compile(rb'^begin [0-7]{3,4} ([^\r\n]{1,255}?)[ \t]*\r?$', re.M)
_UU_END = re.compile(rb'^end[ \t]*\r?$', re.M)


def extract_uuencoded(data: bytes) -> tuple[bytes, list[Attachment]]:
    """Plain text with the uuencoded files inside it taken out, and those files as attachments named from their
    `begin` line. A block without its `end` line, or whose lines are not uuencode, stays text."""
    found, kept, pos = [], [], 0
    for begin in _UU_BEGIN.finditer(data):
        if begin.start() < pos:
            continue
        end = _UU_END.search(data, begin.end())
        if not end:
            break
        payload = decode_uu_lines(data[begin.end():end.start()])
        if payload is None:
            continue
        name = clean_filename(decode_bytes(begin.group(1), None)[0]) or type_filename('application/octet-stream')
        content_type = _BUILTIN_TYPES.guess_type(name, strict=False)[0] or 'application/octet-stream'
        found.append(make_attachment(payload, name, content_type, None, False))
        kept.append(data[pos:begin.start()])
        pos = end.end()
    if not found:
        return data, []
    kept.append(data[pos:])
    return b''.join(kept), found


def decode_uu_lines(block: bytes) -> bytes | None:
    """The bytes of uuencoded lines (each starts with its length character); None if a line is not uuencode."""
    out = bytearray()
    for line in block.split(b'\n'):
        line = line.rstrip(b'\r')
        if not line:
            continue
        length = (line[0] - 32) & 63
        if length == 0:
            continue          # the "`" or " " line before `end`
        try:
            out += binascii.a2b_uu(line[:(length * 4 + 5) // 3])
        except binascii.Error:
            return None
    return bytes(out) if out else None
