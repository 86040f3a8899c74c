"""Delivering composed messages to the configured SMTP relay (RFC 5321), and what the relay's answer means.

A `RelaySession` keeps one connection to the relay open across messages (STARTTLS and AUTH when configured) and
sends one message per MAIL transaction. Its answer is a `DeliveryResult`:
  * `sent`: the relay took the message for at least one recipient; `reply` is its final reply to DATA;
  * `temporary`: try again later (4xx, connection refused, timeout, the relay going away);
  * `permanent`: never try again (5xx for the sender, every recipient or the data).
Recipients refused temporarily while others were accepted are returned in `deferred`, so the caller can queue
them again without sending the message twice to the others; those refused for good are in `refused`.
No SQL here: the outbox and its rows are in `ticketing`.
"""
from __future__ import annotations

import smtplib
import socket
import ssl
from dataclasses import dataclass, field

SENT, TEMPORARY, PERMANENT = 'sent', 'temporary', 'permanent'


@dataclass(frozen=True)
class Relay:
    host: str
    port: int = 25
    starttls: bool = False
    username: str = ''
    password: str = ''
    timeout: float = 30.0

    def __str__(self) -> str:
        return '%s:%d' % (self.host, self.port)


@dataclass(frozen=True)
class DeliveryResult:
    outcome: str
    reply: str
    refused: dict[str, str] = field(default_factory=dict)      # recipient -> reply, refused for good
    deferred: dict[str, str] = field(default_factory=dict)     # recipient -> reply, refused for now


class RelayUnavailable(Exception):
    """The relay could not be reached or the session could not be set up (a temporary failure)."""


def classify(code: int) -> str:
    """The outcome an SMTP reply code means for the message."""
    if 200 <= code < 300:
        return SENT
    return PERMANENT if 500 <= code < 600 else TEMPORARY


MAX_REPLY_TEXT = 1000


def reply_text(code: int, message: bytes | str) -> str:
    """A relay's reply as one line of text that can be stored whatever the relay sent (no NUL, bounded)."""
    text = message.decode('utf-8', 'replace') if isinstance(message, bytes) else str(message)
    return clean_text('%d %s' % (code, ' '.join(text.split())))


def clean_text(text: str) -> str:
    text = ''.join(c if c.isprintable() else ' ' for c in text).strip()
    return text[:MAX_REPLY_TEXT] + ('...' if len(text) > MAX_REPLY_TEXT else '')


class RelaySession:
    """One SMTP connection to the relay, opened on first use and again after it breaks."""

    def __init__(self, relay: Relay):
        self.relay = relay
        self.client: smtplib.SMTP | None = None

    def send(self, mail_from: str, recipients: list[str] | tuple[str, ...], data: bytes) -> DeliveryResult:
        try:
            client = self._connected()
            return self._transaction(client, mail_from, list(recipients), data)
        except RelayUnavailable as exc:
            self.close()
            return DeliveryResult(TEMPORARY, clean_text(str(exc)))
        except smtplib.SMTPServerDisconnected as exc:
            self.close()
            return DeliveryResult(TEMPORARY, clean_text('relay %s closed the connection: %s' % (self.relay, exc)))
        except (OSError, smtplib.SMTPException) as exc:
            self.close()
            return DeliveryResult(TEMPORARY, clean_text('relay %s: %s' % (self.relay, _describe(exc))))

    def _connected(self) -> smtplib.SMTP:
        if self.client is not None:
            try:
                if self.client.noop()[0] == 250:
                    return self.client
            except (OSError, smtplib.SMTPException):
                pass
            self.close()
        self.client = open_session(self.relay)
        return self.client

    @staticmethod
    def _transaction(client: smtplib.SMTP, mail_from: str, recipients: list[str], data: bytes) -> DeliveryResult:
        options = ['SMTPUTF8'] if not all(a.isascii() for a in [mail_from, *recipients]) \
            and client.has_extn('smtputf8') else []
        code, message = client.mail(mail_from, options)
        if code != 250:
            client.rset()
            return DeliveryResult(classify(code), 'MAIL FROM refused: ' + reply_text(code, message))
        accepted, refused, deferred = [], {}, {}
        for recipient in recipients:
            code, message = client.rcpt(recipient)
            if code in (250, 251):
                accepted.append(recipient)
            elif classify(code) == PERMANENT:
                refused[recipient] = reply_text(code, message)
            else:
                deferred[recipient] = reply_text(code, message)
        if not accepted:
            client.rset()
            outcome = TEMPORARY if deferred else PERMANENT
            return DeliveryResult(outcome, 'every recipient refused: ' + '; '.join(
                '%s: %s' % item for item in {**refused, **deferred}.items()), refused, deferred)
        try:
            code, message = client.data(data)
        except smtplib.SMTPDataError as exc:            # DATA itself refused (no 354): the relay's code decides
            client.rset()
            code, message = exc.smtp_code, exc.smtp_error
        if code != 250:
            return DeliveryResult(classify(code), 'DATA refused: ' + reply_text(code, message))
        return DeliveryResult(SENT, reply_text(code, message), refused, deferred)

    def close(self) -> None:
        if self.client is None:
            return
        try:
            self.client.quit()
        except (OSError, smtplib.SMTPException):
            self.client.close()
        self.client = None


def open_session(relay: Relay) -> smtplib.SMTP:
    """Connect, EHLO, STARTTLS and AUTH as configured. Raises RelayUnavailable."""
    try:
        client = smtplib.SMTP(relay.host, relay.port, timeout=relay.timeout, local_hostname=_local_name())
    except (OSError, smtplib.SMTPException) as exc:
        raise RelayUnavailable('cannot connect to relay %s: %s' % (relay, _describe(exc))) from exc
    try:
        client.ehlo()
        if relay.starttls:
            client.starttls(context=ssl.create_default_context())
            client.ehlo()
        if relay.username:
            client.login(relay.username, relay.password)
    except (OSError, smtplib.SMTPException) as exc:
        client.close()
        raise RelayUnavailable('relay %s refused the session: %s' % (relay, _describe(exc))) from exc
    return client


def _local_name() -> str:
    return socket.getfqdn() or 'localhost'


def _describe(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        return reply_text(exc.smtp_code, exc.smtp_error)
    return str(exc) or type(exc).__name__
