"""Intake: raw messages in, tickets out (issue 3; SuperOffice CreateTicketFromMailData, seed 003).

Each message is parsed (ingest), routed to a mailbox, checked against what is stored (the same Message-ID in the
same mailbox is stored once), threaded (see threads.py) and written whole: raw bytes, person, ticket, interaction,
attachments, status audit. Messages are written in batches, one transaction each; when a batch fails, its
messages are retried one by one so that one bad message costs only itself. A message that cannot be parsed,
routed or stored is quarantined with the reason, never lost.
"""
from __future__ import annotations

import email.utils
import hashlib
import logging
import secrets
from collections.abc import Iterable, Iterator
import datetime
from dataclasses import dataclass, field, replace

import psycopg

from ingest import ParsedMail, ParseLimits
from outbound.refs import bare_subject, title_from_subject

from . import acks, store
from .config import Config
from .db import first_line
from .pipeline import ParseResult, parse_raw, parsed_batches
from .sources import SourceMessage
from .replies import AUTO_ACK, Question, ReplyError, TicketForReply, display_zone
from .threads import (Lookups, ThreadDecision, TicketFacts, decide, header_candidates, is_automatic,
                      referenced_ticket_ids)

log = logging.getLogger(__name__)

NEW, FOLLOWUP, DUPLICATE, QUARANTINED = 'new', 'followup', 'duplicate', 'quarantined'
BATCH_BYTES = 2 * 1024 * 1024
TRACE_ALLOWANCE = 64 * 1024    # bytes of trace header fields a message may gain on its way in
MAX_MESSAGE_ID = 250          # longer ids are stored by their sha256, so the unique index never overflows


@dataclass(frozen=True)
class Outcome:
    """What became of one message: SuperOffice's TicketInfo plus the interaction, outcome and thread rule."""
    source: str
    outcome: str
    ticket: store.TicketSummary | None = None
    interaction_id: int | None = None
    rule: str | None = None
    reason: str | None = None
    message_id: str | None = None


@dataclass
class Prepared:
    """A message on its way through a batch: parsed and routed, or with the reason it cannot be."""
    message: SourceMessage
    sha256: bytes
    parsed: ParsedMail | None = None
    mailbox: store.Mailbox | None = None
    message_id: str | None = None
    reason: str | None = None


def storage_message_id(parsed: ParsedMail, sha256: bytes) -> str:
    """The Message-ID a message is stored and deduplicated under; one is derived from the bytes if absent."""
    if parsed.message_id:
        return normalize_message_id(parsed.message_id)
    return '%s@sha256.postdesk.invalid' % sha256.hex()


def normalize_message_id(message_id: str) -> str:
    message_id = message_id.strip()
    if len(message_id) <= MAX_MESSAGE_ID:
        return message_id
    return 'sha256:%s' % hashlib.sha256(message_id.encode('utf-8')).hexdigest()


# ------------------------------------------------------------------------------------------------- routing

def route(parsed: ParsedMail, mailboxes: list[store.Mailbox]) -> store.Mailbox | None:
    """The first mailbox named in Delivered-To, X-Original-To, To, Cc; else the default mailbox."""
    by_address = {m.address.lower(): m for m in mailboxes}
    for address in _recipient_addresses(parsed):
        found = by_address.get(address) or by_address.get(_without_plus_tag(address))
        if found:
            return found
    return default_mailbox(mailboxes)


def default_mailbox(mailboxes: list[store.Mailbox]) -> store.Mailbox | None:
    for mailbox in mailboxes:
        if mailbox.is_default:
            return mailbox
    return mailboxes[0] if mailboxes else None


def _recipient_addresses(parsed: ParsedMail) -> Iterator[str]:
    for header in ('Delivered-To', 'X-Original-To'):
        for _, address in email.utils.getaddresses(parsed.header_all(header)):
            if address:
                yield address.lower()
    for address in list(parsed.to) + list(parsed.cc):
        if address.email:
            yield address.email.lower()


def _without_plus_tag(address: str) -> str:
    local, at, domain = address.partition('@')
    return local.split('+', 1)[0] + at + domain


# ------------------------------------------------------------------------------------------------ planning

@dataclass
class _NewTicket:
    row: list
    summary: store.TicketSummary
    item: Prepared
    interaction_id: int


@dataclass
class BatchPlan:
    rows: store.Rows = field(default_factory=store.Rows)
    outcomes: list[Outcome] = field(default_factory=list)


class _Planner:
    """Decides, for the messages of one batch, what each becomes, and builds the rows to write."""

    def __init__(self, conn: psycopg.Connection, config: Config, mailboxes: list[store.Mailbox]):
        self.conn, self.config = conn, config
        self.own_addresses = {m.address.lower() for m in mailboxes}
        self.plan = BatchPlan()
        self.known: dict[str, tuple[int, int]] = {}
        self.facts: dict[int, TicketFacts] = {}
        self.summaries: dict[int, store.TicketSummary] = {}
        self.batch_messages: dict[tuple[int, str], tuple[int, int]] = {}
        self.new_tickets: dict[int, _NewTicket] = {}
        self.persons: dict[str, int] = {}
        self.stored_blobs: set[bytes] = set()
        self.acks_sent: dict[str, int] = {}

    def build(self, items: list[Prepared]) -> BatchPlan:
        ready = [i for i in items if i.reason is None]
        self._learn(ready)
        ticket_ids = iter(store.allocate_ids(self.conn, 'ticket', 'ticket_id', len(ready)))
        interaction_ids = iter(store.allocate_ids(self.conn, 'interaction', 'interaction_id', len(ready)))
        raw_ids = iter(store.allocate_ids(self.conn, 'raw_message', 'raw_id',
                                          sum(1 for i in ready if i.message.raw_id is None)))
        for item in items:
            if item.reason is not None:
                self._quarantine(item, item.reason)
            else:
                self._place(item, ticket_ids, interaction_ids, raw_ids)
        self._plan_acknowledgements()
        self.plan.rows.tickets = [t.row for t in self.new_tickets.values()]
        return self.plan

    # -- what the database knows about this batch, in a handful of queries
    def _learn(self, items: list[Prepared]) -> None:
        by_mailbox: dict[int, list[Prepared]] = {}
        for item in items:
            by_mailbox.setdefault(item.mailbox.mailbox_id, []).append(item)
        ticket_ids: set[int] = set()
        for mailbox_id, group in by_mailbox.items():
            ids = set()
            for item in group:
                ids.add(item.message_id)
                ids.update(normalize_message_id(mid) for _, mid in header_candidates(item.parsed))
                if item.parsed.bounce and item.parsed.bounce.original_message_id:
                    ids.add(normalize_message_id(item.parsed.bounce.original_message_id))
                ticket_ids.update(referenced_ticket_ids(item.parsed))
            for mid, found in store.known_messages(self.conn, mailbox_id, sorted(ids)).items():
                self.known[_key(mailbox_id, mid)] = found
                ticket_ids.add(found[0])
        self.facts, self.summaries = store.ticket_facts(self.conn, sorted(ticket_ids))
        people = {}
        for item in items:
            sender = item.parsed.from_
            if sender and '@' in sender.email and item.parsed.bounce is None:
                people.setdefault(sender.email.lower(), sender.name)
        self.persons = store.upsert_persons(self.conn, people)
        if any(item.mailbox.ack_template for item in items):
            self.acks_sent = store.recent_acks(self.conn, sorted(people))
        digests = sorted({bytes.fromhex(a.sha256) for i in items for a in i.parsed.attachments})
        self.stored_blobs = store.existing_blobs(self.conn, digests)

    def _lookups(self, mailbox_id: int) -> Lookups:
        def ticket_of_message(message_id: str) -> int | None:
            key = _key(mailbox_id, normalize_message_id(message_id))
            found = self.batch_messages.get(key) or self.known.get(key)
            return found[0] if found else None
        return Lookups(ticket_of_message=ticket_of_message, ticket=self.facts.get)

    # -- one message
    def _place(self, item: Prepared, ticket_ids, interaction_ids, raw_ids) -> None:
        mailbox = item.mailbox
        key = _key(mailbox.mailbox_id, item.message_id)
        existing = self.batch_messages.get(key) or self.known.get(key)
        if existing:
            self._duplicate(item, existing)
            return
        decision = decide(item.parsed, mailbox.mailbox_id, mailbox.follow_up, self._lookups(mailbox.mailbox_id))
        if decision.quarantine:
            self._quarantine(item, decision.quarantine)
            return
        interaction_id = next(interaction_ids)
        raw_id = item.message.raw_id or next(raw_ids)
        if decision.ticket_id is None:
            ticket_id, outcome = next(ticket_ids), NEW
            self._open_ticket(item, ticket_id, decision, interaction_id)
        else:
            ticket_id, outcome = decision.ticket_id, FOLLOWUP
            self._follow_up(item, ticket_id, decision, interaction_id)
        self._add_message_rows(item, ticket_id, interaction_id, raw_id, decision.rule)
        if item.parsed.bounce is not None and item.parsed.bounce.original_message_id:
            self._mark_bounced(item)
        self.batch_messages[key] = (ticket_id, interaction_id)
        self.plan.outcomes.append(Outcome(item.message.source, outcome, self._summary(ticket_id), interaction_id,
                                          decision.rule, None, item.message_id))

    def _summary(self, ticket_id: int) -> store.TicketSummary | None:
        new = self.new_tickets.get(ticket_id)
        return new.summary if new else self.summaries.get(ticket_id)

    def _duplicate(self, item: Prepared, existing: tuple[int, int]) -> None:
        ticket_id, interaction_id = existing
        summary = self._summary(ticket_id)
        self.plan.outcomes.append(Outcome(item.message.source, DUPLICATE, summary, interaction_id, None,
                                          'already stored under Message-ID <%s>' % item.message_id, item.message_id))

    def _quarantine(self, item: Prepared, reason: str) -> None:
        hint = item.mailbox.address if item.mailbox else item.message.mailbox
        self.plan.rows.quarantine.append((reason, item.message.source, hint, item.sha256, item.message.raw,
                                          item.message.raw_id))
        self.plan.outcomes.append(Outcome(item.message.source, QUARANTINED, reason=reason,
                                          message_id=item.message_id))

    def _open_ticket(self, item: Prepared, ticket_id: int, decision: ThreadDecision, interaction_id: int) -> None:
        parsed, mailbox = item.parsed, item.mailbox
        sender = parsed.from_
        person_id = self.persons.get(sender.email.lower()) if sender else None
        title = title_from_subject(parsed.subject)
        token = secrets.token_hex(16)
        row = [ticket_id, mailbox.mailbox_id, title, 'Open', mailbox.category, mailbox.priority, person_id,
               sender.email if sender else None, decision.connect_id, 1, bool(parsed.attachments), token]
        person_name = (sender.name or sender.email) if sender and person_id else None
        summary = store.TicketSummary(ticket_id, title, '', mailbox.category, mailbox.priority, person_name, None)
        self.new_tickets[ticket_id] = _NewTicket(row, summary, item, interaction_id)
        self.facts[ticket_id] = TicketFacts(ticket_id, mailbox.mailbox_id, 'active', _participants(parsed), token)
        modifier = sender.email if sender else 'postdesk'
        self.plan.rows.audits.append((ticket_id, interaction_id, 'Created from email', modifier, None, 'Open',
                                      'ticket'))

    def _follow_up(self, item: Prepared, ticket_id: int, decision: ThreadDecision, interaction_id: int) -> None:
        parsed = item.parsed
        has_attachment = bool(parsed.attachments)
        if ticket_id in self.new_tickets:
            row = self.new_tickets[ticket_id].row
            row[9] += 1
            row[10] = row[10] or has_attachment
        else:
            update = self.plan.rows.ticket_updates.setdefault(ticket_id, [0, False, False, None])
            update[0] += 1
            update[1] = update[1] or has_attachment
            update[2] = update[2] or decision.reopen
            if not is_automatic(parsed) and update[3] is None:
                update[3] = interaction_id          # the customer answered: a ticket waiting for it is Open again
        facts = self.facts.get(ticket_id)
        if facts is not None:
            self.facts[ticket_id] = replace(facts, base_status='active' if decision.reopen else facts.base_status,
                                            participants=facts.participants | _participants(parsed))
        if decision.reopen:
            modifier = parsed.from_.email if parsed.from_ else 'postdesk'
            self.plan.rows.audits.append((ticket_id, interaction_id, 'Reopened by customer email', modifier,
                                          'Closed', 'Open', 'ticket'))

    def _add_message_rows(self, item: Prepared, ticket_id: int, interaction_id: int, raw_id: int, rule: str) -> None:
        parsed, rows = item.parsed, self.plan.rows
        envelope = item.message
        if envelope.raw_id is None:
            rows.raw.append((raw_id, item.sha256, envelope.raw, len(envelope.raw), envelope.source,
                             envelope.envelope_from, list(envelope.envelope_to) if envelope.envelope_to else None,
                             envelope.peer, envelope.helo))
        sender = parsed.from_
        rows.interactions.append((
            interaction_id, ticket_id, item.mailbox.mailbox_id, 'inbound', interaction_type(parsed), 'Received',
            parsed.date, parsed.subject, bare_subject(parsed.subject), sender.name if sender else '',
            sender.email if sender else '', store.jsonb([a.to_json() for a in parsed.to]),
            store.jsonb([a.to_json() for a in parsed.cc]), parsed.text, parsed.html, item.message_id,
            [normalize_message_id(m) for m in parsed.in_reply_to],
            [normalize_message_id(m) for m in parsed.references], rule, parsed.auto_submitted,
            store.jsonb(parsed.bounce.to_json()) if parsed.bounce else None,
            self.persons.get(sender.email.lower()) if sender else None, raw_id, len(parsed.attachments),
            list(parsed.defects)))
        for position, attachment in enumerate(parsed.attachments):
            digest = bytes.fromhex(attachment.sha256)
            if digest not in self.stored_blobs:
                rows.blobs.setdefault(digest, (digest, attachment.size, attachment.data))
            rows.attachments.append((interaction_id, position, attachment.filename, attachment.content_type,
                                     attachment.content_id, attachment.inline, attachment.size, digest))


    def _mark_bounced(self, item: Prepared) -> None:
        """A report that one of our own replies failed marks it Failed (see store.mark_bounced_replies); a report
        that it was delayed, relayed or delivered is kept on the ticket and changes nothing."""
        bounce = item.parsed.bounce
        if not acks.reports_failure(bounce):
            return
        report = ' '.join(filter(None, [bounce.action, bounce.status, 'for ' + ', '.join(bounce.recipients)
                                        if bounce.recipients else '']))
        self.plan.rows.bounced.append((item.mailbox.mailbox_id, normalize_message_id(bounce.original_message_id),
                                       report or 'delivery failed'))

    # -- automatic acknowledgements of the new tickets of this batch
    def _plan_acknowledgements(self) -> None:
        candidates = [t for t in self.new_tickets.values() if t.item.mailbox.ack_template]
        if not candidates:
            return
        wanted = [t for t in candidates if acks.reason_not_to_acknowledge(t.item.parsed, self.own_addresses) is None
                  and self._under_ack_limit(t.item)]
        if not wanted:
            return
        try:
            zone = display_zone(self.config.timezone)
        except ReplyError as exc:
            log.error('no acknowledgements: %s', exc)
            return
        ids = iter(store.allocate_ids(self.conn, 'interaction', 'interaction_id', len(wanted)))
        for new in wanted:
            self._add_acknowledgement(new, next(ids), zone)

    def _under_ack_limit(self, item: Prepared) -> bool:
        """Whether the sender may get one more acknowledgement this hour (and count it)."""
        sender = item.parsed.from_.email.lower()
        if self.acks_sent.get(sender, 0) >= self.config.ack_per_hour:
            log.info('no acknowledgement to %s: %d sent in the last hour', sender, self.acks_sent[sender])
            return False
        self.acks_sent[sender] = self.acks_sent.get(sender, 0) + 1
        return True

    def _add_acknowledgement(self, new: _NewTicket, interaction_id: int, zone) -> None:
        item, parsed, mailbox = new.item, new.item.parsed, new.item.mailbox
        ticket_id, title, token = new.row[0], new.row[2], new.row[11]
        now = datetime.datetime.now(datetime.timezone.utc)
        ticket = TicketForReply(ticket_id, title, 'active', 'Open', token, now, mailbox.mailbox_id, mailbox.address,
                                mailbox.name, parsed.from_.email, parsed.from_.name)
        question = Question(new.interaction_id, parsed.subject, bare_subject(parsed.subject), 'Customer Email',
                            'Received', parsed.date or now, parsed.from_.name, parsed.from_.email, parsed.html,
                            parsed.text, item.message_id, tuple(parsed.references))
        try:
            draft, composed = acks.compose_ack(ticket, question, interaction_id, mailbox.ack_template, zone)
        except acks.AckError as exc:      # the customer's message is stored all the same; only the ack is skipped
            log.warning('ticket %d: no acknowledgement to %s: %s', ticket_id, parsed.from_.email, exc)
            return
        rows = self.plan.rows
        rows.outbound.append(store.outbound_interaction_row(mailbox.mailbox_id, AUTO_ACK, 'ack', draft, composed,
                                                            auto_submitted='auto-replied'))
        rows.outbox.append(store.outbox_row(mailbox.mailbox_id, 'ack', draft, composed))
        rows.audits.append((ticket_id, interaction_id, 'Queued for delivery', 'postdesk', None, 'Unsent',
                            'interaction'))
        new.row[9] += 1


def _key(mailbox_id: int, message_id: str) -> tuple[int, str]:
    return mailbox_id, message_id


def _participants(parsed: ParsedMail) -> frozenset[str]:
    found = {a.email.lower() for a in (*parsed.to, *parsed.cc) if a.email}
    if parsed.from_ and parsed.from_.email:
        found.add(parsed.from_.email.lower())
    return frozenset(found)


def interaction_type(parsed: ParsedMail) -> str:
    """The Type a ticket shows for the message (SuperOffice ticket message)."""
    if parsed.bounce is not None:
        return 'Bounce'
    if parsed.auto_submitted is not None:
        return 'Auto Reply'
    return 'Customer Email'


# ------------------------------------------------------------------------------------------------ the run

class Intake:
    """Stores messages as tickets, batch by batch, on one connection (autocommit; one transaction per batch)."""

    def __init__(self, conn: psycopg.Connection, config: Config, mailbox: store.Mailbox | None = None):
        self.conn, self.config, self.forced_mailbox = conn, config, mailbox
        self.mailboxes = store.load_mailboxes(conn)
        # SMTP enforces max_message_bytes on the message as sent; postdesk's Received: header comes on top.
        self.limits = ParseLimits(max_message_bytes=config.max_message_bytes + TRACE_ALLOWANCE)

    def run(self, messages: Iterable[SourceMessage], parse_worker: bool = True) -> Iterator[Outcome]:
        """Store messages batch by batch; parsing runs in a worker process once there is more than one batch."""
        for batch, results in parsed_batches(_batches(messages, self.config.batch_size), self.limits, parse_worker):
            yield from self.store_parsed(batch, results)

    def prepare(self, message: SourceMessage, result: ParseResult | None = None) -> Prepared:
        sha256 = hashlib.sha256(memoryview(message.raw)[message.trace_len:]).digest()   # same bytes, same id
        item = Prepared(message, sha256)
        result = result or parse_raw(message.raw, self.limits)
        if result.parsed is None:
            item.reason = result.reason
            item.mailbox = self.forced_mailbox
            return item
        item.parsed = result.parsed
        item.message_id = storage_message_id(item.parsed, sha256)
        if message.mailbox:
            item.mailbox = self._mailbox_named(message.mailbox)
            if item.mailbox is None:
                item.reason = 'mailbox %s does not exist (any more)' % message.mailbox
            return item
        item.mailbox = self.forced_mailbox or route(item.parsed, self.mailboxes)
        if item.mailbox is None:
            item.reason = 'no mailbox to deliver to: add one with `postdesk mailbox add ADDRESS`'
        return item

    def _mailbox_named(self, address: str) -> store.Mailbox | None:
        for mailbox in self.mailboxes:
            if mailbox.address.lower() == address.lower():
                return mailbox
        return None

    def store_batch(self, batch: list[SourceMessage]) -> list[Outcome]:
        return self.store_parsed(batch, [parse_raw(m.raw, self.limits) for m in batch])

    def store_parsed(self, batch: list[SourceMessage], results: list[ParseResult]) -> list[Outcome]:
        items = [self.prepare(message, result) for message, result in zip(batch, results)]
        try:
            with self.conn.transaction():
                plan = _Planner(self.conn, self.config, self.mailboxes).build(items)
                store.write_rows(self.conn, plan.rows, bulk=True)
            return plan.outcomes
        except psycopg.Error as exc:
            if connection_lost(self.conn):
                raise
            log.warning('batch of %d failed (%s); storing its messages one by one', len(items), first_line(exc))
        except Exception:                 # a defect met by one message must not cost the others
            log.exception('batch of %d failed; storing its messages one by one', len(items))
        return [self.store_one(item) for item in items]

    def store_one(self, item: Prepared) -> Outcome:
        """Store a single message in its own transaction; quarantine it with the reason if that fails."""
        try:
            with self.conn.transaction():
                plan = _Planner(self.conn, self.config, self.mailboxes).build([item])
                store.write_rows(self.conn, plan.rows, bulk=False)
            return plan.outcomes[0]
        except store.DuplicateMessage:
            with self.conn.transaction():
                plan = _Planner(self.conn, self.config, self.mailboxes).build([item])
            return plan.outcomes[0]
        except psycopg.Error as exc:
            if connection_lost(self.conn):
                raise
            reason = 'could not be stored: %s' % first_line(exc)
        except Exception as exc:
            log.exception('%s could not be stored', item.message.source)
            reason = 'could not be stored (%s: %s)' % (type(exc).__name__, first_line(exc))
        log.error('%s quarantined: %s', item.message.source, reason)
        with self.conn.transaction():
            store.insert_quarantine(self.conn, [(reason, item.message.source,
                                                 item.mailbox.address if item.mailbox else item.message.mailbox,
                                                 item.sha256, item.message.raw, item.message.raw_id)])
        return Outcome(item.message.source, QUARANTINED, reason=reason, message_id=item.message_id)


def _batches(messages: Iterable[SourceMessage], size: int, max_bytes: int = BATCH_BYTES) -> Iterator[list[SourceMessage]]:
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


def connection_lost(conn: psycopg.Connection) -> bool:
    """Whether a database error means the connection is gone (try again later) rather than that a statement
    failed (psycopg reports some statement errors, like a too long index row, as OperationalError too)."""
    return conn.closed or conn.broken

