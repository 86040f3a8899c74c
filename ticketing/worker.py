"""Intake workers: the stage that turns spooled SMTP/LMTP messages into tickets (issue 4).

A worker claims pending raw messages (FOR UPDATE SKIP LOCKED, so any number of workers on any number of
machines share the spool), runs them through the same intake as `replay` (one ticket per recipient mailbox), and
marks them done or quarantined in the same transaction. It wakes on the spool's NOTIFY and polls once a second
in case a notification was missed; when PostgreSQL goes away it retries with a pause. Each stored message is
logged on one line: peer, envelope sender, recipients, Message-ID, outcome, ticket and the milliseconds from
acceptance to ticket.
"""
from __future__ import annotations

import datetime
import logging
import os
import signal
import time

import psycopg

from . import spool
from .config import Config
from .db import DatabaseUnavailable, connect, first_line, resolve_database_url
from .intake import QUARANTINED, Intake, Outcome
from .sources import SourceMessage

log = logging.getLogger('postdesk.intake')

POLL_SECONDS = 1.0
# Accepting mail is what senders wait for; turning the spool into tickets can wait a little: while messages keep
# arriving, a worker leaves the CPU to the listeners, but never lets a message wait more than MAX_DELAY_SECONDS
# (the spool is durable either way), and it runs at a lower scheduling priority.
WORKER_NICENESS = 19
SETTLE_SECONDS = 0.1
MAX_DELAY_SECONDS = 10.0
RETRY_SECONDS = 2.0


def messages_for(pending: spool.Pending, mailboxes: dict[str, str]) -> list[SourceMessage]:
    """One message per recipient mailbox (a message to two mailboxes makes a ticket in each)."""
    targets = []
    for rcpt in pending.envelope_to:
        address = _mailbox_for(rcpt.lower(), mailboxes)
        if address and address not in targets:
            targets.append(address)
    if not targets:          # its mailbox was removed after the message was accepted: quarantine tells why
        targets = [pending.envelope_to[0] if pending.envelope_to else '']
    return [SourceMessage(pending.data, '%s #%d' % (pending.source, pending.raw_id), envelope_from=pending.envelope_from,
                          envelope_to=pending.envelope_to, peer=pending.peer, helo=pending.helo,
                          raw_id=pending.raw_id, mailbox=target or None, trace_len=pending.trace_len)
            for target in targets]


def _mailbox_for(address: str, mailboxes: dict[str, str]) -> str | None:
    """The mailbox an envelope recipient names: itself, without its +tag, or its domain's catch-all."""
    local, _, domain = address.rpartition('@')
    for candidate in (address, '%s@%s' % (local.split('+', 1)[0], domain), '*@' + domain):
        if candidate in mailboxes:
            return mailboxes[candidate]
    return None


def process_pending(conn: psycopg.Connection, config: Config, limit: int) -> list[tuple[spool.Pending, Outcome]]:
    """Claim, store and mark up to `limit` spooled messages in one transaction."""
    with conn.transaction():
        claimed = spool.claim_pending(conn, limit)
        if not claimed:
            return []
        intake = Intake(conn, config)
        mailboxes = _mailbox_addresses(intake)
        pairs = [(pending, message) for pending in claimed for message in messages_for(pending, mailboxes)]
        outcomes = intake.store_batch([message for _, message in pairs])
        states: dict[int, str] = {}
        for (pending, _), outcome in zip(pairs, outcomes):
            state = 'quarantined' if outcome.outcome == QUARANTINED else 'done'
            if states.get(pending.raw_id) != 'done':
                states[pending.raw_id] = state
        spool.mark(conn, states)
    return [(pending, outcome) for (pending, _), outcome in zip(pairs, outcomes)]


def _mailbox_addresses(intake: Intake) -> dict[str, str]:
    """address -> mailbox address, with `*@domain` for each catch-all mailbox's domain."""
    found = {m.address.lower(): m.address for m in intake.mailboxes}
    found.update({'*@' + m.address.rpartition('@')[2].lower(): m.address for m in intake.mailboxes if m.catch_all})
    return found


def log_outcome(pending: spool.Pending, outcome: Outcome) -> None:
    waited = datetime.datetime.now(datetime.timezone.utc) - pending.received_at
    log.info('peer=%s from=<%s> to=%s message-id=<%s> outcome=%s ticket=%s ms=%d%s', pending.peer,
             pending.envelope_from, ','.join('<%s>' % r for r in pending.envelope_to), outcome.message_id or '-',
             outcome.outcome, outcome.ticket.ticket_id if outcome.ticket else '-', waited.total_seconds() * 1000,
             ' reason=%s' % outcome.reason if outcome.reason else '')


class Stop:
    """Set by SIGTERM/SIGINT (or by the serving process) to end the worker after the current batch."""

    def __init__(self, event=None):
        self.event = event
        self.requested = False

    def __call__(self, *_):
        self.requested = True

    def is_set(self) -> bool:
        return self.requested or (self.event is not None and self.event.is_set())


def run_worker(config: Config, stop_event=None, drain_seconds: float = 30.0) -> None:
    """Process the spool until stopped; on stop, finish what is pending for up to `drain_seconds`."""
    stop = Stop(stop_event)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    os.nice(WORKER_NICENESS)
    while not stop.is_set():
        try:
            _serve_spool(config, stop)
        except (psycopg.OperationalError, DatabaseUnavailable) as exc:
            log.warning('database unavailable (%s); retrying in %.0f s', first_line(exc),
                        RETRY_SECONDS)
            time.sleep(RETRY_SECONDS)
        except Exception:                  # the spool is durable: log, pause, and take the rows again
            log.exception('intake worker error; retrying in %.0f s', RETRY_SECONDS)
            time.sleep(RETRY_SECONDS)
    _drain(config, drain_seconds)


def _serve_spool(config: Config, stop: Stop) -> None:
    with connect(resolve_database_url(config.database_url, config.embedded_data), autocommit=True) as conn:
        spool.listen(conn)
        while not stop.is_set():
            if _listeners_busy(conn):
                time.sleep(SETTLE_SECONDS)
                continue
            done = process_pending(conn, config, config.batch_size)
            for pending, outcome in done:
                log_outcome(pending, outcome)
            if not done:
                for _ in conn.notifies(timeout=POLL_SECONDS, stop_after=1):
                    pass


def _listeners_busy(conn: psycopg.Connection) -> bool:
    """Yield to a burst: messages still arriving, none of them waiting longer than MAX_DELAY_SECONDS."""
    waited, quiet = spool.pending_ages(conn)
    return waited is not None and quiet < SETTLE_SECONDS and waited < MAX_DELAY_SECONDS


def _drain(config: Config, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    try:
        with connect(resolve_database_url(config.database_url, config.embedded_data), autocommit=True) as conn:
            while time.monotonic() < deadline:
                done = process_pending(conn, config, config.batch_size)
                for pending, outcome in done:
                    log_outcome(pending, outcome)
                if not done:
                    return
    except (psycopg.OperationalError, DatabaseUnavailable) as exc:
        log.warning('could not finish the spool before stopping (%s); it is kept for the next start', exc)
