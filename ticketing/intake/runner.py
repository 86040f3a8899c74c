"""Intake: messages in, tickets out, as named steps (DESIGN.md, "the path of one message"):

    prepare      parse the bytes, take the identity they are stored under     (prepare.py)
    place        route to the mailbox or mailboxes they are for                (place.py)
    plan         dedupe, thread, build the rows                                (plan.py)
    acknowledge  answer new tickets automatically, where the mailbox says so   (acknowledge.py)
    write        one transaction per batch                                     (ticketing.store.batches)

Messages are written in batches, one transaction each. A transient database error (a deadlock, a serialization
failure, a lock timeout, a lost connection: `store.db.is_transient`) is retried with backoff, each time in a fresh
transaction, and never quarantines anything; when the database stays unavailable through the retries,
`DatabaseUnavailable` is raised (nothing is lost: the caller exits 75, answers 451 or 503). Any other failure of
a batch makes its messages be stored one by one, each in a transaction of its own, so that one bad message costs
only itself: only a failure that repeats for a message on its own quarantines it, with the error as the reason.
A message that cannot be parsed or routed is quarantined with the reason, never lost. `Intake` is what `replay`,
the spool worker, quarantine retry and CreateTicketFromMailData call.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator

from ingest import ParseLimits

from ..config import Config
from ..metrics import count_outcomes
from ..model import Mailbox, Outcome, SourceMessage
from ..routing import Directory, directory_of
from ..store import batches, spool
from ..store.db import (Backoff, Connection, DatabaseError, DatabaseUnavailable, connection_lost, first_line,
                        is_transient)
from ..store.mailboxes import load_mailboxes
from ..store.quarantine import insert_quarantine
from ..store.rows import QuarantineRow
from ..store.writes import DuplicateMessage
from .acknowledge import acknowledge
from .parse_ahead import ParseResult, parse_raw, parsed_batches
from .place import Placement, place
from .plan import BatchPlan, Planner, learn, quarantined, spool_states
from .prepare import prepare

log = logging.getLogger('postdesk.intake')

BATCH_BYTES = 2 * 1024 * 1024
TRACE_ALLOWANCE = 64 * 1024    # bytes of trace header fields a message may gain on its way in
ANALYZE_FIRST = 1000           # a run analyzes the tables it fills at 1,000 stored messages, 2,000, 4,000 ...


def batches_of(messages: Iterable[SourceMessage], size: int,
               max_bytes: int = BATCH_BYTES) -> Iterator[list[SourceMessage]]:
    """Batches of at most `size` messages and about `max_bytes` of raw bytes: peak memory depends on the batch,
    never on how many messages the input holds."""
    batch: list[SourceMessage] = []
    total = 0
    for message in messages:
        batch.append(message)
        total += len(message.raw)
        if len(batch) >= size or total >= max_bytes:
            yield batch
            batch, total = [], 0
    if batch:
        yield batch


def parse_limits(config: Config) -> ParseLimits:
    """SMTP enforces max_message_bytes on the message as sent; postdesk's Received: header comes on top."""
    return ParseLimits(max_message_bytes=config.max_message_bytes + TRACE_ALLOWANCE)


class Intake:
    """Stores messages as tickets, batch by batch, on one connection (autocommit; one transaction per batch).
    `mailbox` sends every message to that mailbox (replay --mailbox, CreateTicketFromMailData's MailboxId).
    `reconnect` opens a new connection when this one is lost (without it a lost connection is
    DatabaseUnavailable at once: the spool worker's claims end with their connection)."""

    def __init__(self, conn: Connection, config: Config, mailbox: Mailbox | None = None,
                 directory: Directory | None = None, reconnect: Callable[[], Connection] | None = None,
                 backoff: Backoff = Backoff()):
        self.conn, self.config, self.forced_mailbox = conn, config, mailbox
        self.directory = directory if directory is not None else directory_of(load_mailboxes(conn))
        self.own_addresses = set(self.directory.by_address)
        self.limits = parse_limits(config)
        self.reconnect, self.backoff = reconnect, backoff

    def run(self, messages: Iterable[SourceMessage]) -> Iterator[Outcome]:
        """Store messages batch by batch; parsing runs in a worker process once there is more than one batch.
        The tables are analyzed each time the run has doubled what it stored (from ANALYZE_FIRST messages)."""
        stored, analyze_at = 0, ANALYZE_FIRST
        for batch, results in parsed_batches(batches_of(messages, self.config.batch_size), self.limits):
            outcomes = self.store_parsed(batch, results)
            yield from outcomes
            stored += len(outcomes)
            if stored >= analyze_at:
                self.retried(lambda: batches.analyze_intake_tables(self.conn))
                analyze_at *= 2

    def store_batch(self, batch: list[SourceMessage]) -> list[Outcome]:
        return self.store_parsed(batch, [parse_raw(m.sent, self.limits) for m in batch])

    def store_parsed(self, batch: list[SourceMessage], results: list[ParseResult]) -> list[Outcome]:
        outcomes = self.store_placements(self.placements(batch, results))
        count_outcomes(outcomes)
        return outcomes

    def placements(self, batch: list[SourceMessage], results: list[ParseResult]) -> list[Placement]:
        return [placement for message, result in zip(batch, results)
                for placement in place(prepare(message, result), self.directory, self.forced_mailbox)]

    def plan(self, placements: list[Placement]) -> BatchPlan:
        """What the placed messages become, acknowledgements included (call in a transaction). Spooled messages
        that are no longer this worker's claim are left to whoever holds them."""
        placements = self.own_claims(placements)
        knowledge = learn(self.conn, [p for p in placements if p.reason is None])
        plan = Planner(self.conn, knowledge, placements).plan_all(placements)
        acknowledge(self.conn, plan, knowledge, self.config, self.own_addresses)
        return plan.finish()

    def own_claims(self, placements: list[Placement]) -> list[Placement]:
        raw_ids = sorted({p.prepared.message.raw_id for p in placements if p.prepared.message.raw_id is not None})
        if not raw_ids:
            return placements
        own = spool.lock_own_claims(self.conn, raw_ids)
        return [p for p in placements if p.prepared.message.raw_id is None or p.prepared.message.raw_id in own]

    def store_placements(self, placements: list[Placement]) -> list[Outcome]:
        try:
            return self.retried(lambda: self.write(placements, bulk=True))
        except DatabaseUnavailable:
            raise
        except DatabaseError as exc:
            log.warning('batch of %d failed (%s); storing its messages one by one', len(placements),
                        first_line(exc))
        except Exception:                 # a defect met by one message must not cost the others
            log.exception('batch of %d failed; storing its messages one by one', len(placements))
        return [outcome for group in by_message(placements) for outcome in self.store_one(group)]

    def write(self, placements: list[Placement], bulk: bool) -> list[Outcome]:
        """Plan and write placements in one transaction; their outcomes once it has committed."""
        with self.conn.transaction():
            plan = self.plan(placements)
            batches.write_rows(self.conn, plan.rows, bulk=bulk)
        return plan.outcomes

    def store_one(self, placements: list[Placement]) -> list[Outcome]:
        """Store one message (in each of its mailboxes) in its own transaction; quarantine it with the reason if
        that fails for a reason other than a transient one."""
        try:
            return self.retried(lambda: self.write(placements, bulk=False))
        except DuplicateMessage:              # stored meanwhile by another writer: it is a duplicate now
            return self.retried(lambda: self.duplicates(placements))
        except DatabaseUnavailable:
            raise
        except DatabaseError as exc:
            reason = 'could not be stored: %s' % first_line(exc)
        except Exception as exc:
            log.exception('%s could not be stored', placements[0].prepared.message.source)
            reason = 'could not be stored (%s: %s)' % (type(exc).__name__, first_line(exc))
        return [self.retried(lambda: self.quarantine(placements[0], reason))]

    def duplicates(self, placements: list[Placement]) -> list[Outcome]:
        with self.conn.transaction():
            return self.plan(placements).outcomes

    def retried(self, action: Callable[[], object]):
        """Run `action` (one transaction); a transient database error runs it again after a pause, on a new
        connection when this one was lost. DatabaseUnavailable when the retries run out."""
        pauses = self.backoff.pauses()
        while True:
            try:
                return action()
            except (DatabaseError, DatabaseUnavailable) as exc:
                if not is_transient(exc, self.conn):
                    raise
                pause = next(pauses, None)
                if pause is None or (connection_lost(self.conn) and self.reconnect is None):
                    raise DatabaseUnavailable('PostgreSQL is unavailable: %s' % first_line(exc)) from exc
                log.warning('transient database error (%s); trying again in %.1f s', first_line(exc), pause)
                time.sleep(pause)
                self.recover()

    def recover(self) -> None:
        """A new connection in place of a lost one (the next try fails at once if none can be opened yet)."""
        if not connection_lost(self.conn) or self.reconnect is None:
            return
        try:
            self.conn = self.reconnect()
        except DatabaseUnavailable as exc:
            log.warning('cannot reconnect yet (%s)', first_line(exc))

    def quarantine(self, placement: Placement, reason: str) -> Outcome:
        """Keep the message in the quarantine with the reason (and end its spool claim there)."""
        prepared = placement.prepared
        message = prepared.message
        outcome = quarantined(placement, reason)
        with self.conn.transaction():
            insert_quarantine(self.conn, [QuarantineRow(reason, message.source, placement.hint, prepared.sha256,
                                                        message.raw, message.raw_id)])
            spool.mark(self.conn, spool_states([outcome]))
        log.error('%s quarantined: %s', message.source, reason)
        return outcome


def by_message(placements: list[Placement]) -> list[list[Placement]]:
    """The placements of each message together, in order (a message to two mailboxes is one message)."""
    groups: dict[int, list[Placement]] = {}
    for placement in placements:
        groups.setdefault(id(placement.prepared), []).append(placement)
    return list(groups.values())
