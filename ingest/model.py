"""The ingest stage's result: `ParsedMail` and its parts, plain frozen dataclasses with no database in them.

`ParsedMail.to_json()` is the contract of `postdesk parse --json`: exactly the keys file, message_id,
subject, from, to, cc, reply_to, date, in_reply_to, references, text, html, attachments, auto_submitted, bounce,
defects, error.
"""
from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field

from .charsets import clean_text

_FOLD = re.compile(r'\r?\n(?=[ \t])')


@dataclass(frozen=True)
class Address:
    name: str
    email: str

    def to_json(self) -> dict:
        return {'name': self.name, 'email': self.email}


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    content_id: str | None
    inline: bool
    sha256: str
    data: bytes = field(repr=False)

    @property
    def size(self) -> int:
        return len(self.data)

    def to_json(self) -> dict:
        return {'filename': self.filename, 'content_type': self.content_type, 'size': self.size,
                'content_id': self.content_id, 'inline': self.inline, 'sha256': self.sha256}


@dataclass(frozen=True)
class Bounce:
    """What an RFC 3464 delivery status notification (or a MAILER-DAEMON message) reports."""
    original_message_id: str | None
    recipients: tuple[str, ...]
    action: str | None
    status: str | None

    def to_json(self) -> dict:
        return {'original_message_id': self.original_message_id, 'recipients': list(self.recipients),
                'action': self.action, 'status': self.status}


@dataclass(frozen=True)
class ParsedMail:
    message_id: str | None
    subject: str
    from_: Address | None
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    reply_to: tuple[Address, ...]
    date: datetime.datetime | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    text: str
    html: str | None
    attachments: tuple[Attachment, ...]
    auto_submitted: str | None
    bounce: Bounce | None
    defects: tuple[str, ...]
    raw_headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    size: int = 0

    def header(self, name: str) -> str | None:
        """The first header of that name (case-insensitive) as text, unfolded, or None. Encoded words are left
        as they are: this is for routing and envelope headers (Delivered-To, Return-Path...), not for display."""
        found = self.header_all(name)
        return found[0] if found else None

    def header_all(self, name: str) -> list[str]:
        wanted = name.lower()
        return [header_text(value) for key, value in self.raw_headers if key.lower() == wanted]

    def to_json(self, file: str) -> dict:
        return {
            'file': file,
            'message_id': self.message_id,
            'subject': self.subject,
            'from': self.from_.to_json() if self.from_ else None,
            'to': [a.to_json() for a in self.to],
            'cc': [a.to_json() for a in self.cc],
            'reply_to': [a.to_json() for a in self.reply_to],
            'date': self.date.isoformat() if self.date else None,
            'in_reply_to': list(self.in_reply_to),
            'references': list(self.references),
            'text': self.text,
            'html': self.html,
            'attachments': [a.to_json() for a in self.attachments],
            'auto_submitted': self.auto_submitted,
            'bounce': self.bounce.to_json() if self.bounce else None,
            'defects': list(self.defects),
            'error': None,
        }


def header_text(value: str) -> str:
    """A raw compat32 header value (8-bit bytes as surrogate escapes) as clean text: UTF-8, else Windows-1252."""
    value = _FOLD.sub('', str(value)).replace('\r', ' ').replace('\n', ' ')
    if not value.isascii():
        data = value.encode('utf-8', 'surrogateescape')
        try:
            value = data.decode('utf-8')
        except UnicodeDecodeError:
            value = data.decode('cp1252', 'replace')
    return clean_text(value).replace('\ufffd', '').strip()


def error_json(file: str, reason: str) -> dict:
    """The `parse --json` line for a file that is not an RFC 822 message at all."""
    return {'file': file, 'message_id': None, 'subject': None, 'from': None, 'to': [], 'cc': [], 'reply_to': [],
            'date': None, 'in_reply_to': [], 'references': [], 'text': None, 'html': None, 'attachments': [],
            'auto_submitted': None, 'bounce': None, 'defects': [], 'error': reason}
