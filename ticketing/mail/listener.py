"""SMTP (RFC 5321) and LMTP (RFC 2033) intake on aiosmtpd, on the server's asyncio loop.

The promise to the sending MTA: `250` only after the transaction holding the raw bytes has committed (see
spool.SpoolWriter); a database that cannot be reached gives `451 4.3.0`, so the MTA keeps the message and retries.
Recipients are checked at RCPT time against the mailboxes by the routing rule (`ticketing.routing`: a `+tag` is
ignored, a catch-all mailbox takes unknown addresses of its own domain): anything else gets `550 5.1.1`, so
postdesk is never an open relay. LMTP answers each accepted
recipient after DATA. SIZE is advertised and enforced (`552 5.3.4`), with 8BITMIME, SMTPUTF8 and, when a
certificate is configured, STARTTLS. Sessions are limited in number; every message gets a `Received:` header as
an MTA would add.

Timeouts as Postfix has them (`Timeouts`): an idle timeout per read (no command for that long, and during DATA
no bytes for that long: aiosmtpd's own timer restarts only when a command arrives, so a long transfer was cut
while its bytes flowed); a minimum data rate during DATA, averaged over a window (Postfix's
smtpd_min_data_rate), so a client that trickles a byte every few seconds is cut; and a maximum transaction time
from MAIL to the end of DATA. Each cut is answered `421 4.4.2` and logged on one line.
"""
from __future__ import annotations

import asyncio
import email.utils
import logging
import re
import secrets
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP

from ..metrics import count_smtp_reply
from ..model import Envelope
from ..routing import Directory, directory_of, mailbox_for
from ..store.db import first_line
from ..store.spool import SpoolUnavailable, load_mailboxes_now
from .spool import SpoolWriter

log = logging.getLogger('postdesk.smtp')

TOO_MUCH_DATA = '552 Error: Too much mail data'
MALFORMED_ADDRESS = '553 5.1.3 Error: malformed address'
SIZE_DECLARED_TOO_BIG = '552 Error: message size exceeds fixed maximum message size'
LINE_TOO_LONG = '500 Line too long (see RFC5321 4.5.3.1.6)'
# aiosmtpd answers these itself; postdesk gives them enhanced status codes (RFC 3463), and in LMTP repeats the
# answer to DATA once per accepted recipient (RFC 2033 4.2), as aiosmtpd sends it only once.
_REWORDED = {TOO_MUCH_DATA: '552 5.3.4 Message too big for this system',
             SIZE_DECLARED_TOO_BIG: '552 5.3.4 Message size exceeds the fixed maximum message size',
             LINE_TOO_LONG: '500 5.5.2 Line too long (see RFC 5321 4.5.3.1.6)',
             MALFORMED_ADDRESS: '501 5.1.3 Bad address syntax'}
_ANSWERS_TO_DATA = (TOO_MUCH_DATA, LINE_TOO_LONG)
RECIPIENT_REFRESH_SECONDS = 1.0
# The path of nearly every MAIL FROM and RCPT TO: `<dot-atom@dot-atom>`, then parameters. aiosmtpd parses each
# with the email package's full RFC 5322 grammar (and defines a class per call); this form is read directly.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_SIMPLE_PATH = re.compile(r'[ \t]*<(%s(?:\.%s)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>' % (_ATOM, _ATOM))
_MESSAGE_ID = re.compile(rb'^Message-ID:[ \t]*(<[^>\r\n]{1,250}>)', re.I | re.M)


@dataclass(frozen=True)
class Timeouts:
    """Seconds and bytes per second; see the module's docstring."""
    idle: float = 300.0
    min_data_rate: float = 1024.0
    data_rate_window: float = 60.0
    max_transaction: float = 3600.0


@dataclass
class DataMeter:
    """Bytes received since DATA began, sampled so that the rate over the last `window` seconds is known."""
    window: float
    received: int = 0
    samples: deque = field(default_factory=deque)

    def too_slow(self, now: float, min_rate: float) -> bool:
        """Sample now; whether fewer than min_rate bytes per second arrived over the last full window."""
        self.samples.append((now, self.received))
        while len(self.samples) > 1 and self.samples[1][0] <= now - self.window:
            self.samples.popleft()
        since, base = self.samples[0]
        return now - since >= self.window and self.received - base < min_rate * (now - since)


class ListenError(ValueError):
    """A listen address that cannot be used (`HOST:PORT` or `unix:PATH`)."""


@dataclass(frozen=True)
class ListenAddress:
    host: str = ''
    port: int = 0
    path: str = ''

    def __str__(self) -> str:
        return 'unix:%s' % self.path if self.path else '%s:%d' % (self.host, self.port)


def parse_listen(value: str) -> ListenAddress:
    if value.startswith('unix:'):
        return ListenAddress(path=value[5:])
    host, sep, port = value.rpartition(':')
    if not sep or not (port.isascii() and port.isdigit()):
        raise ListenError('listen address %r is not HOST:PORT or unix:PATH' % value)
    return ListenAddress(host=host.strip('[]') or '127.0.0.1', port=int(port))


class Recipients:
    """The mailboxes RCPT TO may name, refreshed from the database in the background."""

    def __init__(self):
        self.directory: Directory = directory_of(())
        self.loaded = False
        self.refreshed_at = 0.0

    async def refresh(self, url: str, timeout: float) -> None:
        self.directory = directory_of(await load_mailboxes_now(url, timeout))
        self.loaded = True
        self.refreshed_at = time.monotonic()

    def stale(self) -> bool:
        """A miss is checked against the database again when the list is older than a second: a mailbox added
        a moment ago is not refused."""
        return time.monotonic() - self.refreshed_at > RECIPIENT_REFRESH_SECONDS

    def accepts(self, address: str) -> bool:
        return mailbox_for(self.directory, address) is not None


def is_utf8(text: str) -> bool:
    """Whether a command argument was valid UTF-8 (aiosmtpd keeps undecodable bytes as surrogate escapes)."""
    try:
        text.encode('utf-8')
    except UnicodeEncodeError:
        return False
    return True


def printable(text: str | None) -> str:
    """Envelope text for a log line or a reply: undecodable bytes and control characters as \\xNN, never an
    encoding error."""
    text = text or ''
    if text.isascii() and text.isprintable():
        return text
    text = text.encode('utf-8', 'surrogateescape').decode('utf-8', 'backslashreplace')
    return ''.join(c if c.isprintable() else '\\x%02x' % ord(c) if ord(c) < 256 else '\\u%04x' % ord(c)
                   for c in text)


def sender_problem(address: str | None) -> str | None:
    """What is wrong with a MAIL FROM path (RFC 5321 4.1.2: the null path `<>`, or a mailbox with a domain), or
    None when nothing is."""
    if address in (None, '', '<>'):
        return None
    if not is_utf8(address):
        return '8-bit bytes that are not UTF-8'
    if '@' not in address.strip('@') or '<' in address or '>' in address or not address.isprintable():
        return 'not a mailbox with a domain'
    return None


def null_path_empty(address: str | None) -> str:
    """The envelope sender as stored: the null path `<>` (bounces) as the empty string."""
    return '' if address in (None, '<>') else address


def message_id_of(data: bytes) -> str:
    header = data[:65536].split(b'\r\n\r\n', 1)[0]
    found = _MESSAGE_ID.search(header)
    return found.group(1).decode('ascii', 'replace') if found else '-'


def received_header(hostname: str, helo: str, peer, recipients: list[str], protocol: str) -> bytes:
    """RFC 5321 4.4 trace header for the message, as an MTA adds it."""
    ip = peer[0] if isinstance(peer, tuple) else 'local'
    recipient = ('\r\n\tfor <%s>' % recipients[0]) if len(recipients) == 1 else ''
    return ('Received: from %s ([%s])\r\n\tby %s (postdesk) with %s id %s%s;\r\n\t%s\r\n'
            % (helo or 'unknown', ip, hostname, protocol, secrets.token_hex(6), recipient,
               rfc5322_now())).encode('utf-8', 'replace')


_NOW = [0, '']


def rfc5322_now() -> str:
    """The current time as an RFC 5322 date in local time; formatted once per second (it is asked per message)."""
    second = int(time.time())
    if _NOW[0] != second:
        _NOW[:] = [second, email.utils.formatdate(second, localtime=True)]
    return _NOW[1]


def _protocol_name(server: SMTP, session) -> str:
    if isinstance(server, LMTP):
        return 'LMTP'
    name = 'ESMTP' if session.extended_smtp else 'SMTP'
    return name + ('S' if session.ssl else '')


class IntakeHandler:
    """aiosmtpd hooks: RCPT against the mailboxes, DATA into the spool."""

    def __init__(self, url: str, writer: SpoolWriter, recipients: Recipients, hostname: str,
                 database_timeout: float):
        self.url, self.writer, self.recipients, self.hostname = url, writer, recipients, hostname
        self.database_timeout = database_timeout
        self.sessions: set[Session] = set()
        self.storing = 0
        self.transactions = 0          # sessions between an accepted MAIL and the end of their transaction
        self.on_quiet: Callable[[], None] = lambda: None        # called when the last transaction ends
        self.shutting_down = False

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.shutting_down:
            return '421 4.3.2 Service shutting down, try again later'
        problem = sender_problem(address)
        if problem:
            log.info('peer=%s from=<%s> outcome=550 reason=sender address: %s', _peer(session), printable(address),
                     problem)
            return '550 5.1.7 Sender address rejected: %s' % problem
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return '250 2.1.0 Ok'

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if not self.recipients.loaded or (not self.recipients.accepts(address) and self.recipients.stale()):
            try:
                await self.recipients.refresh(self.url, self.database_timeout)
            except SpoolUnavailable as exc:
                log.warning('peer=%s rcpt=<%s> outcome=451 reason=mailboxes unavailable (%s)',
                            _peer(session), printable(address), first_line(exc))
                return '451 4.3.0 Cannot verify the recipient now, try again later'
        if not is_utf8(address):
            log.info('peer=%s from=<%s> rcpt=<%s> outcome=550 reason=address is not valid UTF-8',
                     _peer(session), printable(envelope.mail_from), printable(address))
            return '550 5.1.1 Recipient address rejected: not a valid address (8-bit bytes that are not UTF-8)'
        if not self.recipients.accepts(address):
            log.info('peer=%s from=<%s> rcpt=<%s> outcome=550 reason=no such mailbox',
                     _peer(session), printable(envelope.mail_from), printable(address))
            return '550 5.1.1 <%s>: Recipient address rejected: no such mailbox here' % printable(address)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return '250 2.1.5 Ok'

    async def handle_DATA(self, server, session, envelope):
        if isinstance(server, Session):
            server.data_complete()          # storing is not receiving: the data rate no longer applies
        started = time.monotonic()
        protocol = _protocol_name(server, session)
        trace = received_header(self.hostname, session.host_name, session.peer, envelope.rcpt_tos, protocol)
        data = trace + envelope.original_content
        record = Envelope(null_path_empty(envelope.mail_from), tuple(envelope.rcpt_tos), _peer(session),
                                session.host_name or '', 'lmtp' if protocol == 'LMTP' else 'smtp', len(trace))
        self.storing += 1
        try:
            raw_id = await self.writer.accept(data, record)
        except SpoolUnavailable as exc:
            log.warning('peer=%s from=<%s> to=%s message-id=%s outcome=451 reason=%s ms=%d', record.peer,
                        printable(record.mail_from), ','.join('<%s>' % r for r in record.rcpt_to), message_id_of(data),
                        first_line(exc), (time.monotonic() - started) * 1000)
            return self._replies(server, envelope, '451 4.3.0 Temporary failure storing the message, '
                                                   'try again later')
        finally:
            self.storing -= 1
        return self._replies(server, envelope, '250 2.0.0 Ok: queued as %d' % raw_id)

    @staticmethod
    def _replies(server, envelope, status: str) -> str:
        """SMTP answers once; LMTP once per accepted recipient (RFC 2033 4.2)."""
        if isinstance(server, LMTP):
            return '\r\n'.join('%s <%s>' % (status, rcpt) for rcpt in envelope.rcpt_tos)
        return status


def _peer(session) -> str:
    peer = session.peer
    if isinstance(peer, tuple) and len(peer) >= 2:
        return '%s:%s' % (peer[0], peer[1])
    return str(peer or 'local')



class Session:
    """What the server needs of every session, for limits, timeouts and shutdown (mixed into SMTP and LMTP)."""
    handler: IntakeHandler
    max_sessions: int
    timeouts: Timeouts = Timeouts()
    rejected = False
    told_421 = False
    meter: DataMeter | None = None
    meter_timer: asyncio.TimerHandle | None = None
    transaction_timer: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        if self.meter is not None:                  # DATA: every read restarts the idle timer
            self.meter.received += len(data)
            self._reset_timeout()
        super().data_received(data)

    async def smtp_MAIL(self, arg):
        await super().smtp_MAIL(arg)
        if self.in_transaction() and self.transaction_timer is None:
            self.handler.transactions += 1
            self.transaction_timer = self.loop.call_later(self.timeouts.max_transaction, self.cut,
                                                          'transaction took longer than %.0f s'
                                                          % self.timeouts.max_transaction)

    async def smtp_DATA(self, arg):
        self.meter = DataMeter(self.timeouts.data_rate_window)
        self.meter.too_slow(self.loop.time(), self.timeouts.min_data_rate)
        self.meter_timer = self.loop.call_later(self.meter.window / 4, self.check_rate)
        try:
            await super().smtp_DATA(arg)
        finally:
            self.data_complete()
            self.end_transaction()

    async def smtp_RSET(self, arg):
        await super().smtp_RSET(arg)
        self.end_transaction()

    def check_rate(self) -> None:
        if self.meter is None:
            return
        if self.meter.too_slow(self.loop.time(), self.timeouts.min_data_rate):
            self.cut('data rate below %.0f bytes/s over %.0f s' % (self.timeouts.min_data_rate, self.meter.window))
            return
        self.meter_timer = self.loop.call_later(self.meter.window / 4, self.check_rate)

    def data_complete(self) -> None:
        """The end of the data has been read (the message is being stored): no rate to keep any more."""
        self.meter = None
        if self.meter_timer is not None:
            self.meter_timer.cancel()
            self.meter_timer = None

    def end_transaction(self) -> None:
        if self.transaction_timer is not None:
            self.transaction_timer.cancel()
            self.transaction_timer = None
            self.handler.transactions -= 1
            if not self.handler.transactions:
                self.handler.on_quiet()

    def _timeout_cb(self):
        """aiosmtpd's idle timeout (no command, or no bytes during DATA): 421 and a log line, as the other cuts."""
        self.cut('no data for %.0f s' % self._timeout_duration)

    def cut(self, reason: str) -> None:
        """Close a session that broke a time limit, with 421 (RFC 5321 3.8) and one log line."""
        log.warning('peer=%s from=<%s> outcome=421 reason=%s', _peer(self.session) if self.session else '-',
                    printable(self.envelope.mail_from if self.envelope else None), reason)
        self.data_complete()
        self.end_transaction()
        if self.transport is not None and not self.transport.is_closing():
            try:
                self.transport.write(b'421 4.4.2 %s: closing connection\r\n' % reason.encode('ascii', 'replace'))
            except (OSError, RuntimeError):
                pass
            self.transport.close()

    def connection_made(self, transport):
        if self._original_transport is not None:      # the same session again, after STARTTLS (RFC 3207 4.2)
            super().connection_made(transport)
            return
        if len(self.handler.sessions) >= self.max_sessions or self.handler.shutting_down:
            self.rejected = True
            transport.write(b'421 4.7.0 Too many connections, try again later\r\n')
            transport.close()
            return
        self.handler.sessions.add(self)
        super().connection_made(transport)

    def connection_lost(self, error):
        if self.rejected:
            return
        self.data_complete()
        self.end_transaction()
        self.handler.sessions.discard(self)
        super().connection_lost(error)

    def _getaddr(self, arg: str):
        """aiosmtpd's address parsing, with the common `<local@domain>` read without its full grammar."""
        simple = _SIMPLE_PATH.match(arg) if arg else None
        rest = arg[simple.end():].lstrip(' \t') if simple else ''
        if simple is None or rest.startswith('('):         # anything else (comments included): aiosmtpd decides
            try:
                return super()._getaddr(arg)
            except (AttributeError, IndexError, ValueError):   # the email package's parser trips on some paths:
                return None, None                               # malformed, 501 5.1.3 (not 500 with its error)
        address = simple.group(1)
        if self.local_part_limit and len(address.rpartition('@')[0]) > self.local_part_limit:
            return None, None
        return address, rest

    async def push(self, status):
        if status in _ANSWERS_TO_DATA and isinstance(self, LMTP) and self.envelope is not None \
                and len(self.envelope.rcpt_tos) > 1:
            status = '\r\n'.join('%s <%s>' % (_REWORDED[status], rcpt) for rcpt in self.envelope.rcpt_tos)
        else:
            status = _REWORDED.get(status, status)
        if isinstance(status, str) and not is_utf8(status):       # never an encoding error for a reply
            status = printable(status)
        count_smtp_reply('lmtp' if isinstance(self, LMTP) else 'smtp', status[:3])
        if status[:3] in ('500', '552'):
            log.info('peer=%s from=<%s> outcome=%s reason=%s', _peer(self.session) if self.session else '-',
                     printable(self.envelope.mail_from if self.envelope else None), status[:3],
                     status.split('\r\n', 1)[0][4:])
        await super().push(status)

    def in_transaction(self) -> bool:
        return self.envelope is not None and self.envelope.mail_from is not None

    def close_with_421(self) -> None:
        """Once per session: a TLS transport that is closing must not be written to again."""
        if self.told_421 or self.transport is None or self.transport.is_closing():
            return
        self.told_421 = True
        try:
            self.transport.write(b'421 4.3.2 Service shutting down, closing connection\r\n')
        except (AttributeError, OSError, RuntimeError):
            pass                  # the peer is gone already; closing is all that is left
        self.transport.close()


class SmtpSession(Session, SMTP):
    pass


class LmtpSession(Session, LMTP):
    pass


def session_factory(kind: type, handler: IntakeHandler, max_sessions: int, timeouts: Timeouts = Timeouts(),
                    **smtp_options):
    def build():
        session = kind(handler, timeout=timeouts.idle, **smtp_options)
        session.handler = handler
        session.max_sessions = max_sessions
        session.timeouts = timeouts
        return session
    return build


async def drain(handler: IntakeHandler, grace: float) -> None:
    """Shutdown: idle sessions get 421 now; those in a transaction may finish within `grace` seconds."""
    handler.shutting_down = True
    deadline = time.monotonic() + grace
    while True:
        for session in [s for s in handler.sessions if not s.in_transaction()]:
            session.close_with_421()
        if (not any(s.in_transaction() for s in handler.sessions) and handler.storing == 0) \
                or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    for session in list(handler.sessions):
        session.close_with_421()


def default_hostname() -> str:
    return socket.getfqdn() or 'localhost'
