"""Header decoding: RFC 5322 unfolding, RFC 2047 encoded words as real mail writes them, raw 8-bit headers,
addresses, message identifiers and dates.

The standard library's `email` package (compat32) gives header values as strings whose non-ASCII bytes are
surrogate escapes. Everything here starts from those raw bytes again, so that the repairs are ours:
  * encoded words inside quoted strings, next to other text without white space, or with spaces inside;
  * adjacent encoded words that split one multi-byte character between them (their bytes are joined first);
  * raw 8-bit bytes inside or around encoded words;
  * charset labels that lie (see `charsets`), and 8-bit headers with no label at all, tried as UTF-8, then the
    charsets the message declares, then Windows-1252.
Addresses (RFC 5322 3.4) as real mail writes them: a display name with brackets or bars in it
(`Max Kohl | [example.com] <kohl@example.com>`), an address after a bare name (`Test test@example.com`), the
only address inside a comment (`Name (hans@example.com)`). An entry without `@` is no mailbox of a recipient
list (`To: Recipients`).
Dates use mail-parser's RFC 5322 date reader after the standard library's.
"""
from __future__ import annotations

from collections.abc import Iterable

import binascii
import datetime
import email.utils
import re
from dataclasses import dataclass

from mailparser.dates import parse_mail_date

from .charsets import clean_text, decode_bytes, lookup_charset
from .model import Address

_ENCODED_WORD = re.compile(rb'=\?([^?\s"]{1,75})\?([bBqQ])\?([^?]*)\?=')
_WHITESPACE_ONLY = re.compile(rb'[ \t\r\n]*')
_FOLD = re.compile(rb'\r?\n(?=[ \t])')
_LINE_BREAK = re.compile(rb'[\r\n]+')
_QP_ESCAPE = re.compile(rb'=([0-9A-Fa-f]{2})')
_MSG_ID = re.compile(r'<([^<>\s]+)>')
_BARE_ID = re.compile(r'[^\s<>,;"]+@[^\s<>,;"]+')
_SPACES = re.compile(r'\s+')
MAX_COMMENT_PARENS = 64
_COMMON_DATE = re.compile(r'(?:[^\W\d]{2,4}\.?,\s*)?(\d{1,2})\.?\s+([^\W\d]{3,4})\.?\s+(\d{4})\s+(\d{1,2}):(\d{2})'
                          r'(?::(\d{2}))?\s+([+-]\d{2}:?\d{2})(?:\s*\([^()]*\))?\s*$')
# English month abbreviations, and the German, French, Spanish, Italian and Dutch ones some mailers write.
_MONTHS = {m: i for i, m in enumerate(('jan feb mar apr may jun jul aug sep oct nov dec').split(), start=1)}
_MONTHS.update({'jän': 1, 'mär': 3, 'mrz': 3, 'mai': 5, 'okt': 10, 'dez': 12, 'janv': 1, 'févr': 2, 'fév': 2,
                'avr': 4, 'juin': 6, 'juil': 7, 'aoû': 8, 'août': 8, 'déc': 12, 'ene': 1, 'abr': 4, 'ago': 8,
                'dic': 12, 'gen': 1, 'mag': 5, 'giu': 6, 'lug': 7, 'set': 9, 'ott': 10, 'mei': 5, 'maa': 3})
_SIMPLE_MAILBOX = re.compile(
    r'\s*(?:(?:"([^"\\]*)"|([^<>",;:()@\\\[\]]*?))\s*<([^<>\s@",;()]+@[^<>\s@",;()]+)>'
    r'|([^<>\s@",;:()]+@[^<>\s@",;:()]+))\s*$')

# A mailbox whose display name holds characters the RFC 5322 parser reads as structure (`[`, `]`, `|`, `@`).
_LENIENT_MAILBOX = re.compile(r'\s*([^<>",;:()]*?)\s*<([^<>\s@",;()]+@[^<>\s@",;()]+)>\s*$')
_BARE_ADDRESS = re.compile(r'\s*([^<>\s@",;:()]+@[^<>\s@",;:()]+)\s*$')
# A name with the address only in a comment: `Hans Meier (hans@example.com)`.
_ADDRESS_IN_COMMENT = re.compile(r'\s*([^<>@",;:()]*?)\s*\(\s*([^<>\s@",;:()]+@[^<>\s@",;:()]+)\s*\)\s*$')
_LOCAL_PART_ONLY = re.compile(r'[A-Za-z0-9._+-]+')


def raw_bytes(value) -> bytes:
    """The bytes of a header value as the compat32 parser holds it (non-ASCII bytes as surrogate escapes)."""
    if value is None:
        return b''
    if isinstance(value, bytes):
        return value
    return str(value).encode('utf-8', 'surrogateescape')


def unfold(data: bytes) -> bytes:
    """RFC 5322 2.2.3: remove the CRLF before folding white space; stray line breaks become a space."""
    return _LINE_BREAK.sub(b' ', _FOLD.sub(b'', data))


@dataclass(frozen=True)
class _Word:
    charset: str
    data: bytes


def decode_header(value, fallbacks: Iterable[str] = ()) -> str:
    """Decode an unstructured header value (Subject, a display name, a file name) to clean text."""
    data = unfold(raw_bytes(value))
    if b'=?' not in data:
        return _decode_plain(data, fallbacks)
    pieces: list[str | _Word] = []
    pos = 0
    for match in _ENCODED_WORD.finditer(data):
        gap = data[pos:match.start()]
        if not (pieces and isinstance(pieces[-1], _Word) and _WHITESPACE_ONLY.fullmatch(gap)):
            if gap:
                pieces.append(_decode_plain(gap, fallbacks))
        word = _Word(match.group(1).decode('ascii', 'replace'), _decode_word_payload(match.group(2), match.group(3)))
        _append_word(pieces, word)
        pos = match.end()
    if pos < len(data):
        pieces.append(_decode_plain(data[pos:], fallbacks))
    return ''.join(_decode_word(p, fallbacks) if isinstance(p, _Word) else p for p in pieces)


def _append_word(pieces: list, word: _Word) -> None:
    """Join a word to the previous one when both share a charset, so split multi-byte characters reunite."""
    if pieces and isinstance(pieces[-1], _Word) and _same_charset(pieces[-1].charset, word.charset):
        pieces[-1] = _Word(pieces[-1].charset, pieces[-1].data + word.data)
    else:
        pieces.append(word)


def _same_charset(a: str, b: str) -> bool:
    return a.lower() == b.lower() or lookup_charset(a) == lookup_charset(b)


def _decode_word_payload(encoding: bytes, payload: bytes) -> bytes:
    if encoding in (b'b', b'B'):
        return _decode_base64(payload)
    return _QP_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), payload.replace(b'_', b' '))


def _decode_base64(payload: bytes) -> bytes:
    """Lenient base64: stray characters ignored, missing padding added, a dangling sextet dropped."""
    data = re.sub(rb'[^A-Za-z0-9+/]', b'', payload)
    if len(data) % 4 == 1:
        data = data[:-1]
    data += b'=' * (-len(data) % 4)
    try:
        return binascii.a2b_base64(data)
    except binascii.Error:
        return b''


def _decode_word(word: _Word, fallbacks: Iterable[str]) -> str:
    text, _ = decode_bytes(word.data, word.charset, fallbacks)
    return text


def _decode_plain(data: bytes, fallbacks: Iterable[str]) -> str:
    """8-bit header text outside encoded words: UTF-8, then the message's charsets, then Windows-1252."""
    if data.isascii() and b'\x1b' not in data:
        return clean_text(data.decode('ascii'))
    text, _ = decode_bytes(data, None, fallbacks)
    return text


def decode_unstructured(value, fallbacks: Iterable[str] = ()) -> str:
    """A header as one line of text: decoded, unfolded, runs of white space collapsed, trimmed."""
    if plain_ascii(value):
        return ' '.join(value.split())
    return _SPACES.sub(' ', decode_header(value, fallbacks)).strip()


def plain_ascii(value) -> bool:
    """True for the common header value that needs no decoding: ASCII, no encoded word, escape or NUL."""
    return (isinstance(value, str) and value.isascii() and '=?' not in value and '\x1b' not in value
            and '\x00' not in value)


# ------------------------------------------------------------------------------------------------ addresses

def parse_addresses(values: list, fallbacks: Iterable[str] = ()) -> list[Address]:
    """Parse address header values into Address(name, email), tolerant of odd real-world forms; entries
    without an address (`"Name" <>`, `MAILER-DAEMON`) are kept."""
    found: list[Address] = []
    for value in values:
        found.extend(_parse_address_value(value, fallbacks))
    return found


def parse_mailboxes(values: list, fallbacks: Iterable[str] = ()) -> list[Address]:
    """The mailboxes of recipient headers (To, Cc, Reply-To): an entry without `@` is no mailbox."""
    return [a for a in parse_addresses(values, fallbacks) if '@' in a.email]


def choose_sender(candidates: Iterable[list]) -> Address | None:
    """The sender from the From, Sender and Reply-To values, in that order: the first mailbox with an `@`;
    else a bare local part such as `MAILER-DAEMON (Mail Delivery System)`; else a display name alone."""
    bare = named = None
    for values, fallbacks in candidates:
        for value in values:
            for address in _parse_address_value(value, fallbacks):
                if '@' in address.email:
                    return address
                if bare is None and _LOCAL_PART_ONLY.fullmatch(address.email):
                    bare = address
                if named is None and address.name and not address.email:
                    named = address
    return bare or named


def _parse_address_value(value, fallbacks: Iterable[str]) -> list[Address]:
    if isinstance(value, str) and value.isascii() and '\x1b' not in value and '\x00' not in value:
        text = ' '.join(value.split())
    else:
        text = _decode_plain(unfold(raw_bytes(value)), fallbacks)
    if not text.strip():
        return []
    simple = _SIMPLE_MAILBOX.match(text)
    if simple:   # the common `Name <a@b>` / `"Name" <a@b>` / `a@b`: the full RFC 5322 parser is 10x slower
        name = simple.group(1) if simple.group(1) is not None else (simple.group(2) or '')
        return [_address(name, simple.group(3) or simple.group(4), fallbacks)]
    lenient = _lenient_mailboxes(text)
    if lenient is not None:
        return [_address(name, addr, fallbacks) for name, addr in lenient]
    pairs = _getaddresses(text)
    if any('=?' in addr for _, addr in pairs):
        # The whole mailbox was put inside an encoded word: decode first, then parse.
        pairs = _getaddresses(decode_header(text, fallbacks))
    if not any(c in text for c in '@<,(') and ' ' in text.strip():
        pairs = [(text.strip().strip('"'), '')]     # a display name alone: "John Doe" or John Doe
    return _merge_split_names([_address(name, addr, fallbacks) for name, addr in pairs])


def _lenient_mailboxes(text: str) -> list[tuple[str, str]] | None:
    """(name, address) pairs when every comma-separated entry is `name <a@b>`, a bare `a@b` or `name (a@b)`
    with a name the RFC 5322 parser would break apart; None when the full parser is needed."""
    if '"' in text or '=?' in text:
        return None
    pairs = []
    for entry in text.split(','):
        mailbox = _LENIENT_MAILBOX.match(entry)
        if mailbox:
            pairs.append((mailbox.group(1), mailbox.group(2)))
            continue
        bare = _BARE_ADDRESS.match(entry)
        if bare:
            pairs.append(('', bare.group(1)))
            continue
        commented = _ADDRESS_IN_COMMENT.match(entry)
        if commented:
            pairs.append((commented.group(1), commented.group(2)))
            continue
        return None
    return pairs


def _getaddresses(text: str) -> list[tuple[str, str]]:
    """The standard library's RFC 5322 address list parser, which recurses once per nested comment: deeper
    nesting than a real header has is flattened first."""
    if text.count('(') > MAX_COMMENT_PARENS:
        text = _without_comments(text)
    try:
        return email.utils.getaddresses([text])
    except RecursionError:
        return email.utils.getaddresses([_without_comments(text)])


def _without_comments(text: str) -> str:
    """The text outside (nested) parentheses, in one pass; an unclosed `(` comments out the rest."""
    kept, depth = [], 0
    for char in text:
        if char == '(':
            depth += 1
        elif char == ')' and depth:
            depth -= 1
        elif not depth:
            kept.append(char)
    return ''.join(kept)


def _address(name: str, addr: str, fallbacks: Iterable[str]) -> Address:
    name = decode_unstructured(name, fallbacks).strip('"\'').strip()
    addr = clean_text(addr.strip().strip('<>').strip())
    if not addr and '@' in name and ' ' not in name:
        name, addr = '', name
    if ' ' in addr and '@' in addr and not name:
        name, addr = _split_name_from_address(addr)
    return Address(name=name, email=addr)


def _split_name_from_address(addr: str) -> tuple[str, str]:
    """`Test test@example.com` (no angle brackets) is the name `Test` and the address `test@example.com`.
    (What stands inside angle brackets stays one address, spaces and all.)"""
    words = addr.split()
    at = max(i for i, word in enumerate(words) if '@' in word)
    rest = ' '.join(words[:at] + words[at + 1:]).strip('"\'').strip()
    return rest, words[at].strip('<>')


def _merge_split_names(addresses: list[Address]) -> list[Address]:
    """`Doe, John <j@x>` unquoted parses as 'Doe' and 'John <j@x>': join such a stray word to the next name."""
    merged: list[Address] = []
    pending = ''
    for i, a in enumerate(addresses):
        if not a.name and not a.email:
            continue
        stray = (not a.name and a.email and '@' not in a.email and i + 1 < len(addresses)
                 and addresses[i + 1].name and '@' in addresses[i + 1].email)
        if stray:
            pending = (pending + ' ' + a.email).strip() if pending else a.email
            continue
        if pending:
            a = Address(name='%s, %s' % (pending, a.name), email=a.email)
            pending = ''
        merged.append(a)
    return merged


# ---------------------------------------------------------------------------------------------- identifiers

def parse_message_ids(value) -> list[str]:
    """Message identifiers of In-Reply-To/References (or Message-ID), angle brackets stripped, in order."""
    text = clean_text(unfold(raw_bytes(value)).decode('utf-8', 'replace').replace('\ufffd', ''))
    ids = _MSG_ID.findall(text)
    if not ids:
        ids = _BARE_ID.findall(text)
    return list(dict.fromkeys(i.strip() for i in ids if i.strip()))


_HEADER_END = re.compile(rb'\r?\n\r?\n')
_MESSAGE_ID_FIELD = re.compile(rb'^message-id[ \t]*:(.*(?:\r?\n[ \t].*)*)', re.IGNORECASE | re.MULTILINE)


def raw_message_id(data: bytes) -> str | None:
    """The Message-ID of a message's bytes, read from its header section alone with two regular expressions and
    no parser (for a message that crashed the parser): what parse_message would give, in the usual cases."""
    end = _HEADER_END.search(data)
    found = _MESSAGE_ID_FIELD.search(data[:end.start()] if end else data)
    return parse_message_id(found.group(1)) if found else None


def parse_message_id(value) -> str | None:
    ids = parse_message_ids(value)
    if ids:
        return ids[0]
    text = clean_text(unfold(raw_bytes(value)).decode('utf-8', 'replace').replace('\ufffd', '')).strip()
    return text.strip('<>').strip() or None


# ---------------------------------------------------------------------------------------------------- dates

def parse_date(value) -> datetime.datetime | None:
    """RFC 5322 3.3 date-time, keeping the sender's offset; None when it cannot be read."""
    if value is None:
        return None
    text = unfold(raw_bytes(value)).decode('utf-8', 'replace').strip()
    if not text:
        return None
    common = _COMMON_DATE.match(text)
    if common:
        try:
            return _common_date(common)
        except ValueError:
            pass
    try:
        parsed = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        parsed = None
    if parsed is not None:
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.timezone.utc)
    try:
        return parse_mail_date(text).value
    except (ValueError, OverflowError, TypeError):
        return None


def _common_date(match: re.Match) -> datetime.datetime:
    """`Tue, 3 Jun 2025 10:04:05 +0200` without the general parser (most mail is written so); also `+02:00`
    offsets and the month abbreviations of the languages above. Raises ValueError for anything else."""
    day, month, year, hour, minute, second, zone = match.groups()
    month_number = _MONTHS.get(month.lower())
    if month_number is None:
        raise ValueError('unknown month %r' % month)
    zone = zone.replace(':', '')
    offset = int(zone[1:3]) * 60 + int(zone[3:5])
    tz = datetime.timezone(datetime.timedelta(minutes=-offset if zone[0] == '-' else offset))
    return datetime.datetime(int(year), month_number, int(day), int(hour), int(minute),
                             int(second or 0), tzinfo=tz)
