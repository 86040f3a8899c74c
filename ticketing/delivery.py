"""The outbox and its delivery workers (issue 5): `postdesk deliver`, `outbox list`, `outbox retry`.

Every outgoing message is an outbox row holding its exact MIME bytes, written in the same transaction as its
outbound interaction. A worker claims one due row at a time with `FOR UPDATE SKIP LOCKED`, sends it to the relay
(`outbound.deliver`) while it holds the row, and records the outcome before the lock is released, so any number
of workers on any number of machines send each row once. A crash after the relay accepted a message but before
the commit sends it again on the next attempt (at least once; SMTP offers no more).

Outcomes: `sent` (the relay's reply kept, the interaction `Unsent` -> `Sent`); a temporary failure is retried
with exponential backoff (retry_base doubled per attempt, at most retry_max) until the row is older than max_age;
a permanent failure (5xx), or giving up, marks the row and the interaction `Failed`, flags the ticket and audits
it. Recipients refused temporarily while others accepted the message get a new row of their own.
"""
from __future__ import annotations

import datetime
import logging
import signal
import threading
import time
from dataclasses import dataclass

import psycopg
from psycopg import sql

from outbound.deliver import PERMANENT, SENT, DeliveryResult, Relay, RelaySession

from .config import Config
from .db import DatabaseUnavailable, connect, first_line, resolve_database_url
from .store import OUTBOX_CHANNEL, add_audit, change_interaction_status, flag_ticket, notify_outbox

log = logging.getLogger('postdesk.delivery')

POLL_SECONDS = 1.0


class NoRelay(Exception):
    """No SMTP relay is configured ([relay] host, or POSTDESK_SMTP_RELAY=HOST:PORT)."""


@dataclass(frozen=True)
class OutboxRow:
    outbox_id: int
    interaction_id: int | None
    ticket_id: int | None
    mailbox_id: int
    mail_from: str
    rcpt_to: tuple[str, ...]
    data: bytes
    attempts: int
    age: float
    kind: str
    message_id: str | None


@dataclass(frozen=True)
class Attempt:
    """One delivery attempt and what became of the row: sent, deferred (retried later) or failed."""
    row: OutboxRow
    result: DeliveryResult
    state: str


def relay_of(config: Config) -> Relay:
    if not config.relay_host:
        raise NoRelay('no SMTP relay configured: set POSTDESK_SMTP_RELAY=HOST:PORT or [relay] host')
    return Relay(config.relay_host, int(config.relay_port), config.relay_starttls, config.relay_username,
                 config.relay_password, float(config.relay_timeout))


def backoff_seconds(attempts: int, base: float, maximum: float) -> float:
    """The pause after the `attempts`-th failed attempt: base, 2 base, 4 base ... at most `maximum`."""
    return min(base * (2 ** max(attempts - 1, 0)), maximum)


def next_backoff(row: 'OutboxRow', config: Config) -> float:
    return backoff_seconds(row.attempts + 1, config.retry_base, config.retry_max)


# ------------------------------------------------------------------------------------------------- claiming

def claim_due(conn: psycopg.Connection) -> OutboxRow | None:
    """Lock the oldest due queued row that no other worker holds. Call inside a transaction."""
    row = conn.execute(
        'SELECT outbox_id, interaction_id, ticket_id, mailbox_id, mail_from, rcpt_to, data, attempts, '
        '       extract(epoch FROM now() - queued_at), kind, message_id '
        "FROM outbox WHERE state = 'queued' AND next_attempt_at <= now() "
        'ORDER BY next_attempt_at, outbox_id LIMIT 1 FOR UPDATE SKIP LOCKED').fetchone()
    if row is None:
        return None
    values = list(row)
    values[5], values[6], values[8] = tuple(values[5]), bytes(values[6]), float(values[8])
    return OutboxRow(*values)


def deliver_one(conn: psycopg.Connection, session: RelaySession, config: Config) -> Attempt | None:
    """Claim one due row, send it and record the outcome, in one transaction. None when nothing is due."""
    with conn.transaction():
        row = claim_due(conn)
        if row is None:
            return None
        result = session.send(row.mail_from, row.rcpt_to, row.data)
        try:
            with conn.transaction():
                state = record_outcome(conn, row, result, config)
        except Exception as exc:            # the row must leave 'queued' all the same, or it is sent again and again
            if conn.closed or conn.broken:
                raise
            log.exception('outbox=%d: could not record the outcome in full', row.outbox_id)
            state = record_outcome_briefly(conn, row, result, config, exc)
    return Attempt(row, result, state)


def record_outcome_briefly(conn: psycopg.Connection, row: OutboxRow, result: DeliveryResult, config: Config,
                           exc: Exception) -> str:
    """What must be kept when recording the outcome failed: a sent row is sent, anything else waits."""
    note = 'outcome not recorded in full (%s)' % type(exc).__name__
    if result.outcome == SENT:
        conn.execute("UPDATE outbox SET state = 'sent', sent_at = now(), attempts = attempts + 1, relay_reply = %s "
                     'WHERE outbox_id = %s', (note, row.outbox_id))
        return 'sent'
    schedule_retry(conn, row, note, next_backoff(row, config))
    return 'deferred'


def record_outcome(conn: psycopg.Connection, row: OutboxRow, result: DeliveryResult, config: Config) -> str:
    if result.outcome == SENT:
        mark_sent(conn, row, result)
        if result.deferred:
            queue_copy(conn, row, result, config.retry_base)
        if result.refused:
            note_refused(conn, row, result)
        return 'sent'
    if result.outcome == PERMANENT:
        mark_failed(conn, row, result.reply)
        return 'failed'
    if row.age >= config.max_delivery_age:
        mark_failed(conn, row, 'gave up after %d attempts over %s: %s'
                    % (row.attempts + 1, datetime.timedelta(seconds=int(row.age)), result.reply))
        return 'failed'
    schedule_retry(conn, row, result.reply, next_backoff(row, config))
    return 'deferred'


def mark_sent(conn: psycopg.Connection, row: OutboxRow, result: DeliveryResult) -> None:
    conn.execute("UPDATE outbox SET state = 'sent', sent_at = now(), attempts = attempts + 1, relay_reply = %s, "
                 'last_error = NULL WHERE outbox_id = %s', (result.reply, row.outbox_id))
    set_interaction_status(conn, row, 'Sent', 'Delivered to the relay: %s' % result.reply)


def mark_failed(conn: psycopg.Connection, row: OutboxRow, reason: str) -> None:
    """The row failed for good. Its interaction becomes Failed unless another row (the same reply to the other
    recipients) was sent: then the failure is audited and flagged, and the reply stays Sent."""
    conn.execute("UPDATE outbox SET state = 'failed', attempts = attempts + 1, last_error = %s WHERE outbox_id = %s",
                 (reason, row.outbox_id))
    if partly_sent(conn, row):
        add_audit(conn, row.ticket_id, row.interaction_id, 'Delivery failed for %s: %s' % (
            ', '.join(row.rcpt_to), reason), 'postdesk', None, None, target='interaction')
    else:
        set_interaction_status(conn, row, 'Failed', 'Delivery failed: %s' % reason)
    flag_ticket(conn, row.ticket_id, 'reply %s could not be delivered: %s' % (row.interaction_id, reason))


def partly_sent(conn: psycopg.Connection, row: OutboxRow) -> bool:
    if row.interaction_id is None:
        return False
    return conn.execute("SELECT EXISTS (SELECT 1 FROM outbox WHERE interaction_id = %s AND state = 'sent')",
                        (row.interaction_id,)).fetchone()[0]


def schedule_retry(conn: psycopg.Connection, row: OutboxRow, reason: str, seconds: float) -> None:
    conn.execute("UPDATE outbox SET attempts = attempts + 1, last_error = %s, "
                 "next_attempt_at = now() + make_interval(secs => %s) WHERE outbox_id = %s",
                 (reason, seconds, row.outbox_id))


def queue_copy(conn: psycopg.Connection, row: OutboxRow, result: DeliveryResult, delay: float) -> None:
    """The same bytes again, for the recipients the relay refused only for now, with their refusals."""
    recipients = list(result.deferred)
    reason = '; '.join('%s: %s' % item for item in result.deferred.items())
    conn.execute('INSERT INTO outbox (interaction_id, ticket_id, mailbox_id, mail_from, rcpt_to, data, kind, '
                 'message_id, attempts, last_error, next_attempt_at) '
                 'SELECT interaction_id, ticket_id, mailbox_id, mail_from, %s, data, kind, message_id, 1, %s, '
                 '       now() + make_interval(secs => %s) FROM outbox WHERE outbox_id = %s',
                 (recipients, reason, delay, row.outbox_id))


def note_refused(conn: psycopg.Connection, row: OutboxRow, result: DeliveryResult) -> None:
    refused = '; '.join('%s: %s' % item for item in result.refused.items())
    if refused:
        flag_ticket(conn, row.ticket_id, 'reply %s was refused for %s' % (row.interaction_id, refused))
        if row.ticket_id is not None:
            add_audit(conn, row.ticket_id, row.interaction_id, 'Recipients refused: %s' % refused, 'postdesk',
                      None, None, target='interaction')


def set_interaction_status(conn: psycopg.Connection, row: OutboxRow, status: str, action: str) -> None:
    if row.interaction_id is not None:
        change_interaction_status(conn, row.ticket_id, row.interaction_id, status, action)


# -------------------------------------------------------------------------------------------------- workers

def deliver_due(conn: psycopg.Connection, session: RelaySession, config: Config, stop: threading.Event,
                report=None) -> list[Attempt]:
    """Send everything that is due now; the attempts made."""
    attempts = []
    while not stop.is_set():
        attempt = deliver_one(conn, session, config)
        if attempt is None:
            break
        log_attempt(attempt)
        if report is not None:
            report(attempt)
        attempts.append(attempt)
    return attempts


def log_attempt(attempt: Attempt) -> None:
    row = attempt.row
    level = logging.INFO if attempt.state == 'sent' else logging.WARNING
    log.log(level, 'outbox=%d ticket=%s interaction=%s to=%s outcome=%s reply=%s', row.outbox_id, row.ticket_id,
            row.interaction_id, ','.join('<%s>' % r for r in row.rcpt_to), attempt.state, attempt.result.reply)


def run_delivery_worker(connect, config: Config, stop: threading.Event, once: bool = False, report=None) -> None:
    """One worker: its own database connection and relay session. With once, it returns when nothing is due."""
    session = RelaySession(relay_of(config))
    try:
        while not stop.is_set():
            try:
                with connect() as conn:
                    conn.execute(sql.SQL('LISTEN {}').format(sql.Identifier(OUTBOX_CHANNEL)))
                    while not stop.is_set():
                        deliver_due(conn, session, config, stop, report)
                        if once:
                            return
                        wait_for_work(conn, stop)
            except (psycopg.OperationalError, DatabaseUnavailable) as exc:
                log.warning('database unavailable (%s); retrying', first_line(exc))
                if once:
                    raise
                stop.wait(2.0)
            except Exception:          # the outbox is durable: log, pause, and claim again
                log.exception('delivery worker error; retrying')
                if once:
                    raise
                stop.wait(2.0)
    finally:
        session.close()


def wait_for_work(conn: psycopg.Connection, stop: threading.Event) -> None:
    """Until a reply is queued (NOTIFY) or the next retry may be due (a poll every second)."""
    deadline = time.monotonic() + POLL_SECONDS
    while not stop.is_set() and time.monotonic() < deadline:
        for _ in conn.notifies(timeout=min(0.25, POLL_SECONDS), stop_after=1):
            return


def run_delivery_process(config: Config, stop, grace: float = 30.0) -> None:
    """`postdesk serve`'s delivery process: `delivery_workers` threads until `stop` (an Event shared with the
    serving process) is set. A reply being sent when it is set is finished (SMTP timeouts bound it)."""
    stopping = threading.Event()
    signal.signal(signal.SIGINT, signal.SIG_IGN)        # a terminal's ^C goes to the serving process, which decides
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    url = resolve_database_url(config.database_url, config.embedded_data)
    threads = [threading.Thread(target=run_delivery_worker, args=(lambda: connect(url, autocommit=True), config,
                                                                  stopping), name='postdesk-deliver-%d' % n)
               for n in range(config.delivery_workers)]
    for thread in threads:
        thread.start()
    while not stop.wait(0.5) and not stopping.is_set():
        pass
    stopping.set()
    for thread in threads:
        thread.join(grace + config.relay_timeout)


# ------------------------------------------------------------------------------------------- operator views

@dataclass(frozen=True)
class OutboxEntry:
    outbox_id: int
    state: str
    kind: str
    ticket_id: int | None
    interaction_id: int | None
    rcpt_to: tuple[str, ...]
    subject: str
    attempts: int
    created_at: datetime.datetime
    next_attempt_at: datetime.datetime
    sent_at: datetime.datetime | None
    last_error: str | None
    relay_reply: str | None

    def to_json(self) -> dict:
        return {'OutboxId': self.outbox_id, 'State': self.state, 'Kind': self.kind, 'TicketId': self.ticket_id,
                'InteractionId': self.interaction_id, 'To': list(self.rcpt_to), 'Subject': self.subject,
                'Attempts': self.attempts, 'CreatedAt': self.created_at.isoformat(),
                'NextAttemptAt': self.next_attempt_at.isoformat() if self.state == 'queued' else None,
                'SentAt': self.sent_at.isoformat() if self.sent_at else None, 'LastError': self.last_error,
                'RelayReply': self.relay_reply}


def list_outbox(conn: psycopg.Connection, states: tuple[str, ...] = ('queued', 'sent', 'failed'),
                outbox_id: int | None = None) -> list[OutboxEntry]:
    rows = conn.execute(
        "SELECT o.outbox_id, o.state, o.kind, o.ticket_id, o.interaction_id, o.rcpt_to, coalesce(i.subject, ''), "
        '       o.attempts, o.created_at, o.next_attempt_at, o.sent_at, o.last_error, o.relay_reply '
        'FROM outbox o LEFT JOIN interaction i USING (interaction_id) '
        'WHERE o.state = ANY(%s) AND (%s::bigint IS NULL OR o.outbox_id = %s) ORDER BY o.outbox_id',
        (list(states), outbox_id, outbox_id)).fetchall()
    return [OutboxEntry(r[0], r[1], r[2], r[3], r[4], tuple(r[5]), *r[6:]) for r in rows]


def retry_outbox(conn: psycopg.Connection, outbox_id: int, modifier: str = 'postdesk') -> OutboxEntry | None:
    """Queue a failed or waiting row again, due now, with a fresh max_age. None when there is no such row; a sent
    row is left alone (sending it again would be a second copy)."""
    with conn.transaction():
        found = conn.execute('SELECT state, ticket_id, interaction_id FROM outbox WHERE outbox_id = %s FOR UPDATE',
                             (outbox_id,)).fetchone()
        if found is None:
            return None
        state, ticket_id, interaction_id = found
        if state != 'sent':
            conn.execute("UPDATE outbox SET state = 'queued', next_attempt_at = now(), queued_at = now() "
                         'WHERE outbox_id = %s', (outbox_id,))
            notify_outbox(conn, str(outbox_id))
            if state == 'failed' and interaction_id is not None:
                change_interaction_status(conn, ticket_id, interaction_id, 'Unsent', 'Delivery retried', modifier)
    return list_outbox(conn, outbox_id=outbox_id)[0]
