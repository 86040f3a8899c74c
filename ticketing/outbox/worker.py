"""The delivery workers: the outbox to the SMTP relay (`postdesk deliver`, and `postdesk serve` with a relay).

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

from outbound.deliver import PERMANENT, SENT, DeliveryResult, Relay, RelaySession

from ..config import Config
from ..mail.worker import Stop
from ..metrics import count_delivery
from ..model import DueMessage
from ..statuses import OUTBOX_FAILED, OUTBOX_SENT
from ..store import events, outbox
from ..store.db import (Connection, DatabaseUnavailable, OperationalError, connect, connection_lost, first_line,
                        resolve_database_url)

log = logging.getLogger('postdesk.delivery')

POLL_SECONDS = 1.0
DEFERRED = 'deferred'


class NoRelay(Exception):
    """No SMTP relay is configured ([relay] host, or POSTDESK_SMTP_RELAY=HOST:PORT)."""


@dataclass(frozen=True)
class Attempt:
    """One delivery attempt and what became of the row: sent, deferred (retried later) or failed."""
    row: DueMessage
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


def next_backoff(row: DueMessage, config: Config) -> float:
    return backoff_seconds(row.attempts + 1, config.retry_base, config.retry_max)


# ------------------------------------------------------------------------------------------------ attempts

def deliver_one(conn: Connection, session: RelaySession, config: Config) -> Attempt | None:
    """Claim one due row, send it and record the outcome, in one transaction. None when nothing is due."""
    with conn.transaction():
        row = outbox.claim_due(conn)
        if row is None:
            return None
        result = session.send(row.mail_from, row.rcpt_to, row.data)
        try:
            with conn.transaction():
                state = record_outcome(conn, row, result, config)
        except Exception as exc:            # the row must leave 'queued' all the same, or it is sent again and again
            if connection_lost(conn):
                raise
            log.exception('outbox=%d: could not record the outcome in full', row.outbox_id)
            state = record_outcome_briefly(conn, row, result, config, exc)
    return Attempt(row, result, state)


def record_outcome_briefly(conn: Connection, row: DueMessage, result: DeliveryResult, config: Config,
                           exc: Exception) -> str:
    """What must be kept when recording the outcome failed: a sent row is sent, anything else waits."""
    note = 'outcome not recorded in full (%s)' % type(exc).__name__
    if result.outcome == SENT:
        outbox.mark_sent_briefly(conn, row, note)
        return OUTBOX_SENT
    outbox.schedule_retry(conn, row, note, next_backoff(row, config))
    return DEFERRED


def record_outcome(conn: Connection, row: DueMessage, result: DeliveryResult, config: Config) -> str:
    if result.outcome == SENT:
        outbox.mark_sent(conn, row, result.reply)
        if result.deferred:
            outbox.queue_copy(conn, row, result.deferred, config.retry_base)
        outbox.note_refused(conn, row, result.refused)
        return OUTBOX_SENT
    if result.outcome == PERMANENT:
        outbox.mark_failed(conn, row, result.reply)
        return OUTBOX_FAILED
    if row.age >= config.max_delivery_age:
        outbox.mark_failed(conn, row, 'gave up after %d attempts over %s: %s'
                           % (row.attempts + 1, datetime.timedelta(seconds=int(row.age)), result.reply))
        return OUTBOX_FAILED
    outbox.schedule_retry(conn, row, result.reply, next_backoff(row, config))
    return DEFERRED


# -------------------------------------------------------------------------------------------------- workers

def deliver_due(conn: Connection, session: RelaySession, config: Config, stop: threading.Event,
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
    count_delivery(attempt.state)
    level = logging.INFO if attempt.state == OUTBOX_SENT else logging.WARNING
    log.log(level, 'outbox=%d ticket=%s interaction=%s to=%s outcome=%s reply=%s', row.outbox_id, row.ticket_id,
            row.interaction_id, ','.join('<%s>' % r for r in row.rcpt_to), attempt.state, attempt.result.reply)


def run_delivery_worker(connect, config: Config, stop: threading.Event, once: bool = False, report=None) -> None:
    """One worker: its own database connection and relay session. With once, it returns when nothing is due."""
    session = RelaySession(relay_of(config))
    try:
        while not stop.is_set():
            try:
                with connect() as conn:
                    events.listen(conn, events.OUTBOX_CHANNEL)
                    while not stop.is_set():
                        deliver_due(conn, session, config, stop, report)
                        if once:
                            return
                        wait_for_work(conn, stop)
            except (OperationalError, DatabaseUnavailable) as exc:
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


def wait_for_work(conn: Connection, stop: threading.Event) -> None:
    """Until a reply is queued (NOTIFY) or the next retry may be due (a poll every second)."""
    deadline = time.monotonic() + POLL_SECONDS
    while not stop.is_set() and time.monotonic() < deadline:
        for _ in conn.notifies(timeout=min(0.25, POLL_SECONDS), stop_after=1):
            return


def run_delivery_process(config: Config, stop, grace: float = 30.0) -> None:
    """`postdesk serve`'s delivery process: `delivery_workers` threads until `stop` (an Event shared with the
    serving process) is set. A reply being sent when it is set is finished (SMTP timeouts bound it)."""
    stopping, terminated = threading.Event(), Stop(stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)        # a terminal's ^C goes to the serving process, which decides
    signal.signal(signal.SIGTERM, terminated)
    url = resolve_database_url(config.database_url, config.embedded_data)
    threads = [threading.Thread(target=run_delivery_worker, args=(lambda: connect(url, autocommit=True), config,
                                                                  stopping), name='postdesk-deliver-%d' % n)
               for n in range(config.delivery_workers)]
    for thread in threads:
        thread.start()
    while not terminated.is_set():
        stop.wait(0.5)
    stopping.set()
    for thread in threads:
        thread.join(grace + config.relay_timeout)
