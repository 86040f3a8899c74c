"""The spool worker: the stage that turns spooled SMTP/LMTP messages into tickets.

A worker claims pending raw messages (see `ticketing.store.spool`: any number of workers on any number of
machines share the spool), parses each once, outside any transaction, places it in every mailbox its envelope
recipients name, and stores it with the same intake as `replay`, marking the rows done or quarantined in the
same transaction. The mailboxes are read once per process and again when they change. It wakes on the spool's
NOTIFY and polls once a second in case a notification was missed; when PostgreSQL goes away it retries with a
pause, and releases the claims of its lost connection first (an outage is not a crash). Each stored message is
logged on one line: peer, envelope sender, recipients, Message-ID, outcome, ticket and the milliseconds from
acceptance to ticket.

Poison messages: a row whose earlier claim ended with the worker process dead (`crashes`, counted by the claim,
see `ticketing.store.spool`) is worked on alone, so that another crash costs no other message a count; one that
has crashed `max_crashes` workers is quarantined unparsed ("crashed the intake worker N times") and the rest of
the spool moves on.
"""
from __future__ import annotations

import datetime
import logging
import os
import signal
import time

from ..config import Config
from ..intake import Intake
from ..intake.parse_ahead import parse_batch
from ..model import QUARANTINED, Outcome, Pending, SourceMessage
from ..routing import Directory, directory_of
from ..store import events, spool
from ..store.db import (Connection, DatabaseUnavailable, OperationalError, connect, connection_lost, first_line,
                        resolve_database_url)
from ..store.mailboxes import load_mailboxes, mailboxes_version

log = logging.getLogger('postdesk.intake')

POLL_SECONDS = 1.0
# Accepting mail is what senders wait for; turning the spool into tickets can wait a little: while messages keep
# arriving, a worker leaves the CPU to the listeners, but never lets a message wait more than MAX_DELAY_SECONDS
# (the spool is durable either way), and it runs at a lower scheduling priority.
WORKER_NICENESS = 19
SETTLE_SECONDS = 0.1
MAX_DELAY_SECONDS = 10.0
RETRY_SECONDS = 2.0


class DirectoryCache:
    """The mailboxes as this process last read them, read again when their version changes."""

    def __init__(self):
        self.version: str | None = None
        self.directory: Directory | None = None

    def current(self, conn: Connection) -> Directory:
        version = mailboxes_version(conn)
        if self.directory is None or version != self.version:
            self.directory, self.version = directory_of(load_mailboxes(conn)), version
        return self.directory


def source_message(pending: Pending) -> SourceMessage:
    return SourceMessage(pending.data, '%s #%d' % (pending.source, pending.raw_id), envelope_from=pending.envelope_from,
                         envelope_to=pending.envelope_to, peer=pending.peer, helo=pending.helo,
                         raw_id=pending.raw_id, trace_len=pending.trace_len, sha256=pending.sha256)


def process_pending(conn: Connection, config: Config, mailboxes: DirectoryCache,
                    limit: int) -> list[tuple[Pending, Outcome]]:
    """Claim up to `limit` spooled messages, parse them, and store them in one transaction."""
    claimed = spool.claim_pending(conn, limit)
    if not claimed:
        return []
    suspects = [p for p in claimed if p.crashes]
    if suspects:
        claimed = suspects[:1]                        # alone: a crash now costs no other message a count
        spool.release_claims(conn, keep=[claimed[0].raw_id])
        if claimed[0].crashes >= config.max_crashes:
            return [quarantine_poison(conn, claimed[0])]
    try:
        intake = Intake(conn, config, directory=mailboxes.current(conn))
        messages = [source_message(p) for p in claimed]
        outcomes = intake.store_parsed(messages, parse_batch([m.sent for m in messages], intake.limits))
    finally:
        if not connection_lost(conn):
            spool.release_claims(conn)        # whatever was not stored is pending for any worker again
    by_id = {p.raw_id: p for p in claimed}
    return [(by_id[o.raw_id], o) for o in outcomes if o.raw_id in by_id]


def quarantine_poison(conn: Connection, pending: Pending) -> tuple[Pending, Outcome]:
    """A message that killed the worker process every time it was worked on: held unparsed, with the count."""
    reason = 'crashed the intake worker %d times' % pending.crashes
    source = source_message(pending).source
    spool.quarantine_claimed(conn, pending.raw_id, source, reason)
    log.error('%s quarantined: %s', source, reason)
    return pending, Outcome(source, QUARANTINED, reason=reason, raw_id=pending.raw_id)


def log_outcome(pending: Pending, outcome: Outcome) -> None:
    waited = datetime.datetime.now(datetime.timezone.utc) - pending.received_at
    log.info('peer=%s from=<%s> to=%s message-id=<%s> outcome=%s ticket=%s ms=%d%s', pending.peer,
             pending.envelope_from, ','.join('<%s>' % r for r in pending.envelope_to), outcome.message_id or '-',
             outcome.outcome, outcome.ticket.ticket_id if outcome.ticket else '-', waited.total_seconds() * 1000,
             ' reason=%s' % outcome.reason if outcome.reason else '')


class Stop:
    """Set by SIGTERM/SIGINT (or by the serving process) to end a worker process after its current work. The
    signal handler only sets a flag: taking the shared event's lock in a handler deadlocks when a second signal
    arrives while the first handler holds it (the serving process's SIGTERM, then the parent-death SIGTERM)."""

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
    mailboxes = DirectoryCache()
    backends: list[int] = []
    while not stop.is_set():
        try:
            serve_spool(config, stop, mailboxes, backends)
        except (OperationalError, DatabaseUnavailable) as exc:
            log.warning('database unavailable (%s); retrying in %.0f s', first_line(exc), RETRY_SECONDS)
            time.sleep(RETRY_SECONDS)
        except Exception:                  # the spool is durable: log, pause, and take the rows again
            log.exception('intake worker error; retrying in %.0f s', RETRY_SECONDS)
            time.sleep(RETRY_SECONDS)
    drain(config, drain_seconds, mailboxes)


def worker_connection(config: Config) -> Connection:
    return connect(resolve_database_url(config.database_url, config.embedded_data), autocommit=True)


def serve_spool(config: Config, stop: Stop, mailboxes: DirectoryCache, backends: list[int]) -> None:
    """Work on the spool on one connection until stopped. `backends` holds the server process of this worker's
    previous connection: if it was lost, its claims are released first."""
    with worker_connection(config) as conn:
        for lost in backends:
            spool.release_lost_claims(conn, lost)
        backends[:] = [spool.backend_pid(conn)]
        events.listen(conn, events.SPOOL_CHANNEL)
        while not stop.is_set():
            if listeners_busy(conn):
                time.sleep(SETTLE_SECONDS)
                continue
            done = process_pending(conn, config, mailboxes, config.batch_size)
            for pending, outcome in done:
                log_outcome(pending, outcome)
            if not done:
                for _ in conn.notifies(timeout=POLL_SECONDS, stop_after=1):
                    pass


def listeners_busy(conn: Connection) -> bool:
    """Yield to a burst: messages still arriving, none of them waiting longer than MAX_DELAY_SECONDS."""
    waited, quiet = spool.pending_ages(conn)
    return waited is not None and quiet < SETTLE_SECONDS and waited < MAX_DELAY_SECONDS


def drain(config: Config, seconds: float, mailboxes: DirectoryCache) -> None:
    deadline = time.monotonic() + seconds
    try:
        with worker_connection(config) as conn:
            while time.monotonic() < deadline:
                done = process_pending(conn, config, mailboxes, config.batch_size)
                for pending, outcome in done:
                    log_outcome(pending, outcome)
                if not done:
                    return
    except (OperationalError, DatabaseUnavailable) as exc:
        log.warning('could not finish the spool before stopping (%s); it is kept for the next start', exc)
