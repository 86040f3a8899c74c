"""Composing a reply: a `ReplyDraft` in, a `ComposedReply` (subject, final HTML and plain text, threading headers,
envelope, the complete MIME message as bytes) out. Pure: no SQL, no network, no clock, no randomness except in
`new_message_id`; the same draft always gives the same bytes.

It follows:
  * seed 000 (iService sendleaveopen): the subject `Re: [ref#: T-I] bare` (or `Re: bare` when the reference is
    suppressed), the quoted question under `On 10/28/2021 3:31:22 PM, Name <email> wrote:` in a grey-bordered
    `<blockquote>`, a final HTML and a final plain text in which quoted lines start with `> `;
  * RFC 5322 (header fields, folding at 78 and never past 998 octets, Date, Message-ID, In-Reply-To, References),
    RFC 2045-2047 (MIME, quoted-printable and base64 bodies, encoded words for non-ASCII header text), RFC 2231
    (non-ASCII and long file names), RFC 2046 and 2387 (multipart/alternative inside multipart/related when there
    are inline images, inside multipart/mixed when there are attached files; no needless level);
  * [MS-OXOMSG] 2.2.1.3 PidTagConversationIndex for Outlook's Thread-Index: a 22-byte header block (0x01, the 40
    most significant bits of the thread's FILETIME, a GUID) that is the same for every reply on a ticket, and one
    5-byte child block for the reply's time.

The HTML policy (how HTML is made safe, and read as plain text) is the caller's, given with the draft: postdesk
passes the inbound allowlist, with the agent's own remote images kept, so that what the customer sees is what an
inbound message may contain. Header values never carry CR or LF from the input.
The MIME bytes are built here rather than through `email.message`, which is several times slower; the round trip
through `ingest.parse_message` is what the tests hold them to.
"""
from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import html
import re
import secrets
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import format_datetime

from .refs import SubjectRef, reply_subject, title_from_subject

QUOTE_STYLE = 'border-left: 1px solid #cccccc; margin: 0pt 0pt 0pt 0.8ex; padding-left: 1ex;'
MAX_REFERENCES = 10           # more are cut to the first 4 and the last 6
HEADER_WIDTH = 78             # RFC 5322 2.1.1: SHOULD be no more than 78 characters, MUST be no more than 998
_MAX_WORD = 900               # a header word longer than this cannot be folded under 998: it is encoded instead
MAX_MESSAGE_ID = 250          # longer message identifiers are not real: not repeated here, stored by digest

_UTC = datetime.timezone.utc
_FILETIME_EPOCH = datetime.datetime(1601, 1, 1, tzinfo=_UTC)
_CONTROL = re.compile(r'[\x00-\x1f\x7f]+')
_SURROGATES = re.compile('[\ud800-\udfff]')
_ATOM_PHRASE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]+")
_ADDR_SPEC = re.compile(r'[^\s<>()\[\],;:@"\\]+@[^\s<>()\[\],;:@"\\]+')
_DOMAIN = re.compile(r'[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?')
_HEADER_NAME = re.compile(r'[!-9;-~]{1,76}')
_CONTENT_TYPE = re.compile(r"[a-z0-9!#$&^_.+-]{1,64}/[a-z0-9!#$&^_.+-]{1,64}")
_OWN_ID = re.compile(r'<?postdesk\.(\d{1,18})\.(\d{1,18})\.[0-9a-f]{12}@[^\s<>@]+>?', re.I)
_ATTRIBUTE_SAFE = "!#$&+^`{|}"          # RFC 2231 attribute-char besides what urllib never quotes
_HIGH_BYTES = bytes(range(128, 256))
# Fields that compose writes itself: an extra header of these names would duplicate or override them (a `Bcc`
# would even show the blind copies).
_COMPOSED_FIELDS = frozenset({
    'from', 'sender', 'to', 'cc', 'bcc', 'subject', 'date', 'message-id', 'in-reply-to', 'references',
    'mime-version', 'content-type', 'content-transfer-encoding', 'content-disposition', 'content-id',
    'thread-topic', 'thread-index', 'return-path'})


class ComposeError(ValueError):
    """The draft cannot become a message (no recipient, no usable Message-ID...)."""


class InvalidAddress(ComposeError):
    """An address that is not an RFC 5322 addr-spec we can write (or a local part that needs SMTPUTF8)."""


class InvalidHeader(ComposeError):
    """An extra header whose name is not a field name, or is one that compose writes itself."""


@dataclass(frozen=True)
class HtmlPolicy:
    """How untrusted HTML is made safe and read as text; outbound has no policy of its own.
    `sanitize(html, defer_images=...)` gives clean HTML, or None for HTML it cannot clean in bounded time (which
    is then sent as its text, `strip_tags(html)`); `to_text(html)` reads clean HTML as plain text."""
    sanitize: Callable[..., str | None]
    to_text: Callable[[str], str]
    strip_tags: Callable[[str], str]


@dataclass(frozen=True)
class Party:
    name: str
    email: str


@dataclass(frozen=True)
class Quoted:
    date: datetime.datetime | None
    name: str
    email: str
    html: str | None
    text: str
    message_id: str | None
    references: tuple[str, ...] = ()


@dataclass(frozen=True)
class OutgoingAttachment:
    filename: str
    content_type: str
    data: bytes
    content_id: str | None = None


@dataclass(frozen=True)
class ReplyDraft:
    ticket_id: int
    interaction_id: int
    subject: str
    body_html: str
    sender: Party
    to: tuple[Party, ...]
    message_id: str
    ticket_reference: str
    date: datetime.datetime
    cc: tuple[Party, ...] = ()
    bcc: tuple[Party, ...] = ()
    quoted: Quoted | None = None
    add_subject_ref: bool = True
    attachments: tuple[OutgoingAttachment, ...] = ()
    extra_headers: tuple[tuple[str, str], ...] = ()
    thread_started: datetime.datetime | None = None
    html_policy: HtmlPolicy = field(kw_only=True)


@dataclass(frozen=True)
class ComposedReply:
    subject: str
    subject_ref: str
    subject_bare: str
    final_html: str
    final_plain: str
    message_id: str
    in_reply_to: str | None
    references: tuple[str, ...]
    mail_from: str
    recipients: tuple[str, ...]
    data: bytes


@dataclass(frozen=True)
class RenderedQuote:
    """The quoted part of a reply: the attribution line and the quoted message, as HTML and as plain text."""
    attribution_html: str
    html: str
    attribution_plain: str
    text: str


@dataclass(frozen=True)
class MimePart:
    """One MIME entity: its header lines (each ending in CRLF) and its encoded body."""
    headers: bytes
    body: bytes


# ------------------------------------------------------------------------------------------------ the reply

def compose_reply(draft: ReplyDraft) -> ComposedReply:
    """The complete reply for a draft. Raises ComposeError (InvalidAddress, InvalidHeader) for a draft that cannot
    be written as a message."""
    ref = SubjectRef(draft.ticket_id, draft.interaction_id) if draft.add_subject_ref else None
    subject = reply_subject(clean_header_text(draft.subject), ref)
    subject_bare = title_from_subject(clean_header_text(draft.subject))
    policy = draft.html_policy
    body = clean_agent_html(draft.body_html, policy)
    quote = render_quote(draft.quoted, policy) if draft.quoted is not None else None
    final_html = join_final_html(body, quote)
    final_plain = join_final_plain(body, quote, policy)
    message_id = clean_message_id(draft.message_id)
    if message_id is None:
        raise ComposeError('the draft has no usable Message-ID: %r' % draft.message_id)
    in_reply_to = clean_message_id(draft.quoted.message_id) if draft.quoted is not None else None
    references = thread_references(draft.ticket_reference, draft.quoted)
    mail_from = clean_address(draft.sender.email)
    recipients = envelope_recipients(draft.to + draft.cc + draft.bcc)
    if not recipients:
        raise ComposeError('the reply has no recipient')
    header_block = render_headers(draft, subject, subject_bare, message_id, in_reply_to, references)
    content = build_content(final_plain, final_html, draft.attachments, message_id)
    data = b''.join((header_block, b'MIME-Version: 1.0\r\n', content.headers, b'\r\n', content.body))
    return ComposedReply(subject=subject, subject_ref='Re: %s' % ref if ref else 'Re:', subject_bare=subject_bare,
                         final_html=final_html, final_plain=final_plain, message_id=message_id,
                         in_reply_to=in_reply_to, references=references, mail_from=mail_from,
                         recipients=recipients, data=data)


def new_message_id(ticket_id: int, interaction_id: int, domain: str) -> str:
    """A new Message-ID (without brackets) for an outbound interaction: `postdesk.<T>.<I>.<12 hex>@<domain>`."""
    host = clean_domain(domain)
    if host is None:
        raise ComposeError('not a domain for a Message-ID: %r' % domain)
    return 'postdesk.%d.%d.%s@%s' % (ticket_id, interaction_id, secrets.token_hex(6), host)


def is_own_message_id(message_id: str | None) -> bool:
    """True for an identifier made by `new_message_id`, with or without angle brackets."""
    return own_message_ref(message_id) is not None


def own_message_ref(message_id: str | None) -> SubjectRef | None:
    """The ticket and interaction named by an identifier made by `new_message_id`, or None."""
    found = _OWN_ID.fullmatch((message_id or '').strip())
    if found is None:
        return None
    return SubjectRef(int(found.group(1)), int(found.group(2)))


# ------------------------------------------------------------------------------------ final HTML and text

def clean_agent_html(body_html: str, policy: HtmlPolicy) -> str:
    """The agent's HTML by the caller's policy, remote images kept."""
    return clean_html(body_html or '', policy, defer_images=False)


_IMG_TAG = re.compile(r'<img\b[^>]*>', re.I)


def restore_deferred_images(stored_html: str) -> str:
    """`<img data-src=...>` as the inbound sanitiser left it becomes `<img src=...>` again (for the sanitiser to
    check and defer once more). A sender's own data-src never reaches storage: the allowlist drops it."""
    return _IMG_TAG.sub(lambda tag: tag.group(0).replace(' data-src="', ' src="'), stored_html)


def render_quote(quoted: Quoted, policy: HtmlPolicy) -> RenderedQuote:
    """The attribution and the quoted message, as HTML and as text. The message is its stored HTML sanitised
    again (and that HTML's text), or without HTML its text, escaped with line breaks kept."""
    name, email = clean_header_text(quoted.name), clean_header_text(quoted.email)
    if name and email:
        who_html = '%s &lt;%s&gt;' % (html.escape(name, quote=False), html.escape(email, quote=False))
        who_plain = '%s <%s>' % (name, email)
    else:
        who_plain = name or email or 'the customer'
        who_html = html.escape(who_plain, quote=False)
    if quoted.html and quoted.html.strip():
        # Stored HTML keeps remote images in data-src (not loaded); they are checked again like any src and stay
        # deferred, instead of being dropped as an attribute the allowlist does not know.
        cleaned = clean_html(restore_deferred_images(quoted.html), policy, defer_images=True)
        if cleaned.strip():
            return RenderedQuote(attribution_line(quoted.date, who_html), cleaned,
                                 attribution_line(quoted.date, who_plain), policy.to_text(cleaned))
    text = scrub_surrogates(quoted.text or '').replace('\r\n', '\n').replace('\r', '\n')
    return RenderedQuote(attribution_line(quoted.date, who_html), text_to_html(text),
                         attribution_line(quoted.date, who_plain), text)


def clean_html(source: str, policy: HtmlPolicy, defer_images: bool) -> str:
    """HTML cleaned by the policy; HTML the policy cannot clean is sent as its escaped text."""
    source = scrub_surrogates(source)
    cleaned = policy.sanitize(source, defer_images=defer_images)
    return text_to_html(policy.strip_tags(source)) if cleaned is None else cleaned


def text_to_html(text: str) -> str:
    """Plain text as HTML: escaped, line breaks as `<br>`."""
    lines = text.replace('\r\n', '\n').replace('\r', '\n').rstrip('\n').split('\n')
    return '<br>'.join(html.escape(line, quote=False) for line in lines)


def join_final_html(body: str, quote: RenderedQuote | None) -> str:
    """The agent's HTML, then (when answering a message) the seed's attribution and blockquote."""
    if quote is None:
        return body
    block = '<div>%s<blockquote style="%s">%s</blockquote></div>' % (quote.attribution_html, QUOTE_STYLE,
                                                                     quote.html)
    return body + '\n' + block if body else block


def join_final_plain(body: str, quote: RenderedQuote | None, policy: HtmlPolicy) -> str:
    """The plain text of the final HTML: html2text's reading of the agent's part (nothing when it shows nothing:
    white space, `&nbsp;`), then the attribution line directly followed by the quoted lines, each starting `> `
    (`>` alone for an empty line)."""
    body_text = policy.to_text(body) if body else ''
    if not body_text.strip():
        body_text = ''
    if quote is None:
        return body_text
    lines = [line.rstrip() for line in quote.text.rstrip().split('\n')] if quote.text.strip() else []
    quoted = ''.join('> %s\n' % line if line else '>\n' for line in lines)
    return body_text + ('\n' if body_text else '') + quote.attribution_plain + '\n' + quoted


def attribution_line(date: datetime.datetime | None, who: str) -> str:
    """`On 10/28/2021 3:31:22 PM, who wrote:`; `who wrote:` when the date is unknown."""
    if date is None:
        return '%s wrote:' % who
    return 'On %s, %s wrote:' % (format_quote_date(date), who)


def format_quote_date(date: datetime.datetime) -> str:
    """`10/28/2021 3:31:22 PM`: month/day/year and a 12-hour clock, in the datetime's own timezone (seed 000)."""
    return '%d/%d/%d %d:%02d:%02d %s' % (date.month, date.day, date.year, date.hour % 12 or 12, date.minute,
                                         date.second, 'PM' if date.hour >= 12 else 'AM')


# -------------------------------------------------------------------------------------- threading headers

def thread_references(ticket_reference: str, quoted: Quoted | None) -> tuple[str, ...]:
    """References: the ticket's fixed reference, the quoted message's References, then its Message-ID;
    de-duplicated; more than 10 cut to the first 4 and the last 6 (RFC 5322 3.6.4 allows trimming)."""
    candidates = [ticket_reference]
    if quoted is not None:
        candidates.extend(quoted.references)
        candidates.append(quoted.message_id)
    found = tuple(dict.fromkeys(filter(None, map(clean_message_id, candidates))))
    if len(found) > MAX_REFERENCES:
        found = found[:4] + found[-6:]
    return found


def clean_message_id(message_id: str | None) -> str | None:
    """A message identifier without brackets, white space or control characters; None when nothing usable is
    left (empty, not ASCII, absurdly long)."""
    if not message_id:
        return None
    text = ''.join(_CONTROL.sub('', message_id).split()).strip('<>')
    text = text.replace('<', '').replace('>', '')
    if not text or not text.isascii() or len(text) > MAX_MESSAGE_ID:
        return None
    return text


def thread_index(ticket_reference: str, thread_started: datetime.datetime, date: datetime.datetime,
                 message_id: str) -> str:
    """Outlook's Thread-Index ([MS-OXOMSG] 2.2.1.3), base64: the header block (reserved 0x01, the 5 most
    significant bytes of the FILETIME of `thread_started`, a GUID from the ticket reference) and one child block
    (delta code bit and 31 bits of the time since the header's time, then 8 bits that vary per message)."""
    head_time = max(filetime(thread_started), 0) >> 24
    guid = hashlib.md5(ticket_reference.encode('utf-8', 'replace')).digest()
    delta = max(filetime(date) - (head_time << 24), 0)
    if delta >> 49 == 0:                     # under about 1.7 years: units of 2^18 * 100 ns
        code = (delta >> 18) & 0x7FFFFFFF
    else:                                    # delta code 1: units of 2^23 * 100 ns
        code = 0x80000000 | ((delta >> 23) & 0x7FFFFFFF)
    varying = hashlib.md5(message_id.encode('utf-8', 'replace')).digest()[:1]
    block = b'\x01' + head_time.to_bytes(5, 'big') + guid + code.to_bytes(4, 'big') + varying
    return base64.b64encode(block).decode('ascii')


def filetime(moment: datetime.datetime) -> int:
    """A Windows FILETIME: 100-nanosecond intervals since 1601-01-01 UTC (a naive datetime is taken as UTC)."""
    delta = as_aware(moment) - _FILETIME_EPOCH
    return (delta.days * 86400 + delta.seconds) * 10_000_000 + delta.microseconds * 10


def as_aware(moment: datetime.datetime) -> datetime.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=_UTC)


# ----------------------------------------------------------------------------------------------- addresses

def clean_address(email: str) -> str:
    """An addr-spec for headers and the envelope: control characters and surrounding brackets removed, an
    internationalised domain in IDNA form. Raises InvalidAddress for anything else."""
    address = _CONTROL.sub('', scrub_surrogates(email or '')).strip().strip('<>').strip()
    if not _ADDR_SPEC.fullmatch(address) or len(address) > 254:
        raise InvalidAddress('not an e-mail address: %r' % email)
    local, domain = address.rsplit('@', 1)
    if not local.isascii():
        raise InvalidAddress('the local part of %r needs SMTPUTF8, which is not supported' % email)
    if not domain.isascii():
        try:
            domain = domain.encode('idna').decode('ascii')
        except UnicodeError as error:
            raise InvalidAddress('not a domain: %r (%s)' % (email, error)) from None
    return '%s@%s' % (local, domain)


def clean_domain(domain: str) -> str | None:
    text = _CONTROL.sub('', domain or '').strip().strip('<>').strip().lstrip('@')
    if text and not text.isascii():
        try:
            text = text.encode('idna').decode('ascii')
        except UnicodeError:
            return None
    return text if _DOMAIN.fullmatch(text) else None


def envelope_recipients(parties: tuple[Party, ...]) -> tuple[str, ...]:
    """Every address once (compared case-insensitively), in the order given."""
    seen: dict[str, str] = {}
    for party in parties:
        address = clean_address(party.email)
        seen.setdefault(address.lower(), address)
    return tuple(seen.values())


def format_mailbox(party: Party) -> str:
    """`Name <addr>`, the name as atoms, a quoted string or RFC 2047 encoded words; `addr` without a name."""
    address = clean_address(party.email)
    phrase = format_phrase(clean_header_text(party.name))
    return '%s <%s>' % (phrase, address) if phrase else address


def format_phrase(name: str) -> str:
    if not name:
        return ''
    if name.isascii() and '=?' not in name and len(name) <= _MAX_WORD:
        if _ATOM_PHRASE.fullmatch(name):
            return name
        return '"%s"' % name.replace('\\', '\\\\').replace('"', '\\"')
    return ' '.join(encoded_words(name))


# ------------------------------------------------------------------------------------------------- headers

def render_headers(draft: ReplyDraft, subject: str, subject_bare: str, message_id: str, in_reply_to: str | None,
                   references: tuple[str, ...]) -> bytes:
    """The message's own header fields, in the usual order; Bcc never appears."""
    lines = [
        fold_header('Date', format_datetime(as_aware(draft.date))),
        fold_header('From', format_mailbox(draft.sender)),
    ]
    if draft.to:
        lines.append(fold_header('To', ', '.join(map(format_mailbox, draft.to))))
    if draft.cc:
        lines.append(fold_header('Cc', ', '.join(map(format_mailbox, draft.cc))))
    lines.append(fold_header('Subject', encode_unstructured(clean_header_text(subject))))
    lines.append(fold_header('Message-ID', '<%s>' % message_id))
    if in_reply_to:
        lines.append(fold_header('In-Reply-To', '<%s>' % in_reply_to))
    if references:
        lines.append(fold_header('References', ' '.join('<%s>' % ref for ref in references)))
    lines.append(fold_header('Thread-Topic', encode_unstructured(clean_header_text(subject_bare))))
    lines.append(fold_header('Thread-Index', thread_index(draft.ticket_reference, draft.thread_started or draft.date,
                                                          draft.date, message_id)))
    lines.extend(render_extra_header(name, value) for name, value in draft.extra_headers)
    return b''.join(lines)


def render_extra_header(name: str, value: str) -> bytes:
    field = _CONTROL.sub('', name or '').strip()
    if not _HEADER_NAME.fullmatch(field):
        raise InvalidHeader('not a header field name: %r' % name)
    if field.lower() in _COMPOSED_FIELDS:
        raise InvalidHeader('%s is written by compose itself and cannot be given as an extra header' % field)
    return fold_header(field, encode_unstructured(clean_header_text(value)))


def clean_header_text(value: str | None) -> str:
    """Header text on one line: CR, LF and other control characters become spaces, runs of white space one."""
    if not value:
        return ''
    return ' '.join(_CONTROL.sub(' ', scrub_surrogates(value)).split())


def scrub_surrogates(text: str) -> str:
    """Lone surrogates (from JSON `\\ud800` or surrogate-escaped bytes) cannot be encoded: U+FFFD instead."""
    return text if text.isascii() else _SURROGATES.sub('\ufffd', text)


def encode_unstructured(text: str) -> str:
    """RFC 2047 for unstructured text: the leading plain ASCII words as they are, the rest from the first word
    that is not (non-ASCII, `=?`, too long to fold) as encoded words."""
    if text.isascii() and '=?' not in text and len(text) <= _MAX_WORD:
        return text
    words = text.split(' ')
    plain = 0
    while plain < len(words) and is_plain_word(words[plain]):
        plain += 1
    if plain == len(words):
        return text
    return ' '.join(words[:plain] + encoded_words(' '.join(words[plain:])))


def is_plain_word(word: str) -> bool:
    return word.isascii() and '=?' not in word and len(word) <= _MAX_WORD


def encoded_words(text: str) -> list[str]:
    """`=?utf-8?b?...?=` words of at most 75 characters, never splitting a UTF-8 sequence between two words."""
    data = text.encode('utf-8')
    words, start, size = [], 0, len(data)
    while start < size:
        end = min(start + 45, size)          # 45 bytes are 60 base64 characters: 72 with the delimiters
        while end < size and data[end] & 0xC0 == 0x80:
            end -= 1
        words.append('=?utf-8?b?%s?=' % base64.b64encode(data[start:end]).decode('ascii'))
        start = end
    return words


def fold_header(name: str, value: str) -> bytes:
    """`Name: value` CRLF-terminated, folded at spaces to lines of at most 78 characters where the words allow;
    the value's words are at most 900 characters (see encode_unstructured), so no line passes 998."""
    line = '%s: %s' % (name, value)
    if len(line) <= HEADER_WIDTH:
        return (line + '\r\n').encode('ascii')
    lines, current, empty = [], name + ':', True
    for word in value.split(' '):
        if not empty and len(current) + 1 + len(word) > HEADER_WIDTH:
            lines.append(current)
            current = ''
        current += ' ' + word
        empty = False
    lines.append(current)
    return ('\r\n'.join(lines) + '\r\n').encode('ascii')


# ---------------------------------------------------------------------------------------------------- MIME

def build_content(plain: str, final_html: str, attachments: tuple[OutgoingAttachment, ...],
                  message_id: str) -> MimePart:
    """multipart/alternative (plain, then HTML), inside multipart/related with the inline images, inside
    multipart/mixed with the other files; each level only when it has something to hold."""
    seed = hashlib.md5(message_id.encode('ascii')).hexdigest()[:24]
    content = multipart('alternative', (text_part('plain', plain), text_part('html', final_html)),
                        boundary(seed, 'alt'))
    inline = [a for a in attachments if clean_content_id(a.content_id)]
    files = [a for a in attachments if not clean_content_id(a.content_id)]
    if inline:
        content = multipart('related', [content] + [attachment_part(a) for a in inline], boundary(seed, 'rel'),
                            'type="multipart/alternative"; ')
    if files:
        content = multipart('mixed', [content] + [attachment_part(a) for a in files], boundary(seed, 'mix'))
    return content


def boundary(seed: str, level: str) -> str:
    """`=_` cannot occur in quoted-printable or base64 text, the only encodings used here, so a boundary that
    starts with it never meets a body line (RFC 2045 6.7, RFC 2046 5.1.1)."""
    return '=_postdesk_%s_%s' % (seed, level)


def multipart(subtype: str, parts, delimiter: str, params: str = '') -> MimePart:
    head = fold_header('Content-Type', 'multipart/%s; %sboundary="%s"' % (subtype, params, delimiter))
    dash = ('--%s\r\n' % delimiter).encode('ascii')
    pieces = []
    for part in parts:
        pieces.extend((dash, part.headers, b'\r\n', part.body, b'\r\n'))
    pieces.append(('--%s--\r\n' % delimiter).encode('ascii'))
    return MimePart(head, b''.join(pieces))


def text_part(subtype: str, text: str) -> MimePart:
    """A UTF-8 text part: quoted-printable when it is mostly ASCII, base64 when QP would be longer."""
    data = text.replace('\r\n', '\n').replace('\r', '\n').replace('\n', '\r\n').encode('utf-8')
    if mostly_ascii(data):
        encoding, body = 'quoted-printable', encode_quoted_printable(data)
    else:
        encoding, body = 'base64', encode_base64(data)
    head = ('Content-Type: text/%s; charset="utf-8"\r\nContent-Transfer-Encoding: %s\r\n'
            % (subtype, encoding)).encode('ascii')
    return MimePart(head, body)


def mostly_ascii(data: bytes) -> bool:
    """QP writes a non-ASCII byte in 3 octets, base64 every byte in 4/3: QP is shorter below 1 in 6."""
    return (len(data) - len(data.translate(None, _HIGH_BYTES))) * 6 <= len(data)


def encode_quoted_printable(data: bytes) -> bytes:
    """RFC 2045 6.7 with CRLF line breaks, lines of at most 76 characters."""
    encoded = binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)
    if b'\r\n' not in data:                 # b2a_qp takes its soft line break from the data's first line break
        encoded = encoded.replace(b'\n', b'\r\n')
    return encoded


def encode_base64(data: bytes) -> bytes:
    """RFC 2045 6.8: lines of 76 characters, CRLF-terminated."""
    encoded = binascii.b2a_base64(data, newline=False)
    if not encoded:
        return b''
    return b'\r\n'.join([encoded[i:i + 76] for i in range(0, len(encoded), 76)]) + b'\r\n'


def attachment_part(attachment: OutgoingAttachment) -> MimePart:
    """A file (Content-Disposition attachment) or, with a Content-ID, an inline image of the HTML."""
    content_type = clean_content_type(attachment.content_type)
    content_id = clean_content_id(attachment.content_id)
    filename = clean_filename(attachment.filename)
    lines = [fold_header('Content-Type', content_type + ('; ' + filename_params('name', filename) if filename
                                                           else ''))]
    disposition = 'inline' if content_id else 'attachment'
    lines.append(fold_header('Content-Disposition', disposition + ('; ' + filename_params('filename', filename)
                                                                   if filename else '')))
    if content_id:
        lines.append(fold_header('Content-ID', '<%s>' % content_id))
    lines.append(b'Content-Transfer-Encoding: base64\r\n')
    return MimePart(b''.join(lines), encode_base64(attachment.data))


def clean_content_type(content_type: str) -> str:
    """The `type/subtype` of an attachment, lower-cased; parameters dropped; anything else octet-stream."""
    main = (content_type or '').split(';', 1)[0].strip().lower()
    return main if _CONTENT_TYPE.fullmatch(main) else 'application/octet-stream'


def clean_content_id(content_id: str | None) -> str | None:
    return clean_message_id(content_id)


def clean_filename(filename: str) -> str:
    return clean_header_text((filename or '').replace('\\', '/').rsplit('/', 1)[-1])


def filename_params(key: str, filename: str) -> str:
    """`key="name"` for a short ASCII name; RFC 2231 `key*=utf-8''...` (in `key*0*=` sections when long)
    otherwise, so that every piece folds onto its own line."""
    if filename.isascii() and len(filename) <= 60:
        return '%s="%s"' % (key, filename.replace('\\', '\\\\').replace('"', '\\"'))
    encoded = urllib.parse.quote(filename.encode('utf-8'), safe=_ATTRIBUTE_SAFE)
    if len(encoded) <= 60:
        return "%s*=utf-8''%s" % (key, encoded)
    sections, start = [], 0
    while start < len(encoded):
        end = min(start + 60, len(encoded))
        percent = encoded.rfind('%', end - 2, end)   # never cut a %XX escape
        if percent >= 0 and end < len(encoded):
            end = percent
        sections.append(encoded[start:end])
        start = end
    return '; '.join("%s*%d*=%s%s" % (key, i, "utf-8''" if i == 0 else '', piece)
                     for i, piece in enumerate(sections))
