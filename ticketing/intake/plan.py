"""Intake, step 3: plan. For the placed messages of one batch, what each becomes (a duplicate, a new ticket, a
follow-up on a ticket, a quarantined message) and the rows that write it: raw bytes, person, ticket,
interaction, attachments, status audit (SuperOffice's CreateTicketFromMailData, seed 003).

What the database knows about the batch is read first, in a handful of queries (`learn`); then each message is
decided by `threads.decide` with that knowledge and with what the messages before it in the batch did, so a
question and its answer in one batch thread as they would one by one. A message that replies stored before it
name joins their ticket and the other tickets they opened are merged into it (`threads.join_waiting_replies`),
so the same messages give the same tickets in any order.
"""
from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field

from ingest import ParsedMail
from outbound.refs import bare_subject, title_from_subject

from ..model import DUPLICATE, FOLLOWUP, NEW, QUARANTINED, Outcome, TicketFacts, TicketSummary
from ..statuses import (AUTO_REPLY, BOUNCE_REPORT, CLOSED, CUSTOMER_EMAIL, QUEUED, RECEIVED, SPOOL_DONE,
                        SPOOL_QUARANTINED, SYSTEM_MODIFIER, TICKET_TARGET, ticket_transition)
from ..store import agents, batches
from ..store.db import Connection
from ..store.rows import (AttachmentRow, AuditRow, BlobRow, BounceMark, InteractionRow, QuarantineRow, RawRow, Rows,
                          ThreadWaitRow, TicketRow, TicketUpdate, jsonb)
from ..threads import (Lookups, ThreadDecision, WaitingReply, decide, header_candidates, is_automatic,
                       join_waiting_replies, normalize_message_id, participants_of, referenced_ticket_ids,
                       waited_for)
from .place import Placement
from .prepare import Prepared

MessageKey = tuple[int, str]          # (mailbox_id, stored Message-ID)


@dataclass
class Knowledge:
    """What the database knows about a batch: stored Message-IDs, the tickets they and the subject references
    name, persons, attachment bytes already stored, recent acknowledgements (read by `acknowledge`)."""
    known: dict[MessageKey, tuple[int, int]] = field(default_factory=dict)
    facts: dict[int, TicketFacts] = field(default_factory=dict)
    summaries: dict[int, TicketSummary] = field(default_factory=dict)
    persons: dict[str, int] = field(default_factory=dict)
    stored_blobs: set[bytes] = field(default_factory=set)
    acks_sent: dict[str, int] = field(default_factory=dict)
    waiting: dict[MessageKey, list[WaitingReply]] = field(default_factory=dict)
    active_work: set[int] = field(default_factory=set)          # tickets with work the agents have not finished
    ticket_queues: dict[int, int] = field(default_factory=dict)


def ids_to_look_up(parsed: ParsedMail, message_id: str) -> Iterator[str]:
    yield message_id
    yield from (normalize_message_id(mid) for _, mid in header_candidates(parsed))
    if parsed.bounce and parsed.bounce.original_message_id:
        yield normalize_message_id(parsed.bounce.original_message_id)


def learn(conn: Connection, placements: list[Placement]) -> Knowledge:
    knowledge = Knowledge()
    ticket_ids: set[int] = set()
    for p in placements:
        ticket_ids.update(referenced_ticket_ids(p.prepared.parsed))
    ticket_ids.update(learn_threads(conn, placements, knowledge))
    knowledge.facts, knowledge.summaries = batches.ticket_facts(conn, sorted(ticket_ids))
    knowledge.active_work, knowledge.ticket_queues = batches.work_of_tickets(conn, sorted(ticket_ids))
    people = senders(placements)
    knowledge.persons = batches.upsert_persons(conn, people)
    digests = sorted({bytes.fromhex(a.sha256) for p in placements for a in p.prepared.parsed.attachments})
    knowledge.stored_blobs = batches.existing_blobs(conn, digests)
    return knowledge


def learn_threads(conn: Connection, placements: list[Placement], knowledge: Knowledge) -> set[int]:
    """What each mailbox knows of the Message-IDs the batch's messages name (the messages they continue), and the
    replies stored before them that name them; the tickets of both."""
    looked_up: dict[int, set[str]] = {}
    own: dict[int, set[str]] = {}
    for p in placements:
        mailbox_id = p.mailbox.mailbox_id
        looked_up.setdefault(mailbox_id, set()).update(ids_to_look_up(p.prepared.parsed, p.prepared.message_id))
        own.setdefault(mailbox_id, set()).add(p.prepared.message_id)
    batches.lock_threads(conn, [(mailbox_id, mid) for mailbox_id, ids in looked_up.items() for mid in ids])
    tickets = set()
    for mailbox_id in looked_up:
        known, waiting = batches.thread_lookups(conn, mailbox_id, sorted(looked_up[mailbox_id]),
                                                sorted(own[mailbox_id]))
        for mid, found in known.items():
            knowledge.known[(mailbox_id, mid)] = found
            tickets.add(found[0])
        for mid, replies in waiting.items():
            knowledge.waiting[(mailbox_id, mid)] = replies
            tickets.update(w.ticket_id for w in replies)
    return tickets


def senders(placements: list[Placement]) -> dict[str, str]:
    """lower(address) -> name of the persons the batch's messages come from (delivery reports come from no one)."""
    people: dict[str, str] = {}
    for p in placements:
        sender = p.prepared.parsed.from_
        if sender and '@' in sender.email and p.prepared.parsed.bounce is None:
            people.setdefault(sender.email.lower(), sender.name)
    return people


@dataclass
class NewTicket:
    row: TicketRow
    summary: TicketSummary
    placement: Placement
    interaction_id: int


@dataclass
class BatchPlan:
    rows: Rows = field(default_factory=Rows)
    outcomes: list[Outcome] = field(default_factory=list)
    new_tickets: dict[int, NewTicket] = field(default_factory=dict)

    def finish(self) -> 'BatchPlan':
        self.rows.tickets = [t.row for t in self.new_tickets.values()]
        self.rows.spool_states = spool_states(self.outcomes)
        return self


class IdPool:
    """Ids taken from the sequences for the whole batch at once, so its rows can be written by COPY."""

    def __init__(self, conn: Connection, placements: list[Placement]):
        stored = [p for p in placements if p.reason is None]
        unstored = {id(p.prepared) for p in stored if p.prepared.message.raw_id is None}
        tickets, interactions, raw = batches.allocate_many_ids(conn, [
            ('ticket', 'ticket_id', len(stored)), ('interaction', 'interaction_id', len(stored)),
            ('raw_message', 'raw_id', len(unstored))])
        self.tickets, self.interactions, self._raw = iter(tickets), iter(interactions), iter(raw)
        self._raw_ids: dict[int, int] = {}

    def raw_id(self, placement: Placement) -> tuple[int, bool]:
        """The raw id of the placement's bytes, and whether their row is still to be written."""
        message = placement.prepared.message
        if message.raw_id is not None:
            return message.raw_id, False
        key = id(placement.prepared)
        if key in self._raw_ids:
            return self._raw_ids[key], False
        self._raw_ids[key] = next(self._raw)
        return self._raw_ids[key], True


class Planner:
    """Decides, for the placed messages of one batch, what each becomes, and builds the rows to write."""

    def __init__(self, conn: Connection, knowledge: Knowledge, placements: list[Placement]):
        self.conn, self.knowledge = conn, knowledge
        self.ids = IdPool(conn, placements)
        self.plan = BatchPlan()
        self.batch_messages: dict[MessageKey, tuple[int, int]] = {}
        self.merged_into: dict[int, int] = {}
        self._agents: frozenset[str] | None = None

    def plan_all(self, placements: list[Placement]) -> BatchPlan:
        for placement in placements:
            if placement.reason is not None:
                self.quarantine(placement, placement.reason)
            else:
                self.plan_one(placement)
        return self.plan

    def is_agent(self, address: str) -> bool:
        if self._agents is None:            # read once per batch, and only when a subject reference needs it
            self._agents = agents.agent_addresses(self.conn)
        return address in self._agents

    def lookups(self, mailbox_id: int) -> Lookups:
        def ticket_of_message(message_id: str) -> int | None:
            key = (mailbox_id, normalize_message_id(message_id))
            found = self.batch_messages.get(key) or self.knowledge.known.get(key)
            return self.resolve(found[0]) if found else None
        return Lookups(ticket_of_message=ticket_of_message, ticket=self.knowledge.facts.get, is_agent=self.is_agent)

    def plan_one(self, placement: Placement) -> None:
        mailbox, prepared = placement.mailbox, placement.prepared
        key = (mailbox.mailbox_id, prepared.message_id)
        existing = self.batch_messages.get(key) or self.knowledge.known.get(key)
        if existing:
            self.duplicate(placement, existing)
            return
        decided = decide(prepared.parsed, mailbox.mailbox_id, mailbox.follow_up, self.lookups(mailbox.mailbox_id))
        if decided.quarantine:
            self.quarantine(placement, decided.quarantine)
            return
        decision = self.join_earlier_replies(key, decided)
        interaction_id = next(self.ids.interactions)
        if decision.ticket_id is None:
            ticket_id, outcome = next(self.ids.tickets), NEW
            self.open_ticket(placement, ticket_id, decision, interaction_id)
        else:
            ticket_id, outcome = decision.ticket_id, FOLLOWUP
            self.follow_up(placement, ticket_id, decision, interaction_id)
        self.add_message_rows(placement, ticket_id, interaction_id, decision.rule)
        self.leave_waiting(placement, decided, ticket_id, interaction_id)
        self.mark_bounced(placement)
        self.batch_messages[key] = (ticket_id, interaction_id)
        self.plan.outcomes.append(Outcome(prepared.message.source, outcome, self.summary(ticket_id), interaction_id,
                                          decision.rule, None, prepared.message_id, mailbox.address,
                                          prepared.message.raw_id))

    def resolve(self, ticket_id: int) -> int:
        """The ticket a ticket was merged into in this batch (itself when it was not)."""
        while ticket_id in self.merged_into:
            ticket_id = self.merged_into[ticket_id]
        return ticket_id

    def join_earlier_replies(self, key: MessageKey, decision: ThreadDecision) -> ThreadDecision:
        """A message that replies stored before it name: it joins their ticket, the others are merged in."""
        waiting = self.knowledge.waiting.pop(key, [])
        if not waiting:
            return decision
        self.plan.rows.resolved_waits.append(key)
        decision, merged = join_waiting_replies(decision, waiting, self.resolve)
        kept = self.resolve(decision.ticket_id)
        for ticket_id in merged:
            self.merged_into[ticket_id] = kept
            self.plan.rows.merges.append((ticket_id, kept))
            self.merge_facts(ticket_id, kept)
        return ThreadDecision(decision.rule, kept, decision.connect_id, decision.reopen)

    def merge_facts(self, merged: int, kept: int) -> None:
        """Who may continue the kept ticket now includes the merged ticket's participants."""
        facts, into = self.knowledge.facts.get(merged), self.knowledge.facts.get(kept)
        if facts is not None and into is not None:
            self.knowledge.facts[kept] = TicketFacts(into.ticket_id, into.mailbox_id, into.base_status,
                                                     into.participants | facts.participants, into.thread_token)

    def leave_waiting(self, placement: Placement, decided: ThreadDecision, ticket_id: int,
                      interaction_id: int) -> None:
        """The Message-IDs a message names while its headers found no ticket: their arrival joins this one."""
        mailbox_id, parsed = placement.mailbox.mailbox_id, placement.prepared.parsed
        for message_id in waited_for(parsed, decided):
            key = (mailbox_id, message_id)
            if key in self.batch_messages or key in self.knowledge.known:
                continue
            self.plan.rows.waits.append(ThreadWaitRow(mailbox_id, message_id, ticket_id, interaction_id,
                                                      parsed.date))
            self.knowledge.waiting.setdefault(key, []).append(WaitingReply(ticket_id, interaction_id, parsed.date))

    def summary(self, ticket_id: int) -> TicketSummary | None:
        new = self.plan.new_tickets.get(ticket_id)
        return new.summary if new else self.knowledge.summaries.get(ticket_id)

    def duplicate(self, placement: Placement, existing: tuple[int, int]) -> None:
        ticket_id, interaction_id = existing
        prepared = placement.prepared
        self.plan.outcomes.append(Outcome(prepared.message.source, DUPLICATE, self.summary(ticket_id), interaction_id,
                                          None, 'already stored under Message-ID <%s>' % prepared.message_id,
                                          prepared.message_id, placement.mailbox.address, prepared.message.raw_id))

    def quarantine(self, placement: Placement, reason: str) -> None:
        prepared = placement.prepared
        message = prepared.message
        self.plan.rows.quarantine.append(QuarantineRow(reason, message.source, placement.hint, prepared.sha256,
                                                       message.raw, message.raw_id))
        self.plan.outcomes.append(quarantined(placement, reason))

    def open_ticket(self, placement: Placement, ticket_id: int, decision: ThreadDecision,
                    interaction_id: int) -> None:
        parsed, mailbox = placement.prepared.parsed, placement.mailbox
        sender = parsed.from_
        person_id = self.knowledge.persons.get(sender.email.lower()) if sender else None
        title = title_from_subject(parsed.subject)
        token = secrets.token_hex(16)
        created = ticket_transition('create')
        row = TicketRow(ticket_id, mailbox.mailbox_id, title, created.after, mailbox.category, mailbox.priority,
                        person_id, sender.email if sender else None, decision.connect_id, 1, bool(parsed.attachments),
                        token)
        person_name = (sender.name or sender.email) if sender and person_id else None
        summary = TicketSummary(ticket_id, title, '', mailbox.category, mailbox.priority, person_name, None)
        self.plan.new_tickets[ticket_id] = NewTicket(row, summary, placement, interaction_id)
        self.knowledge.facts[ticket_id] = TicketFacts(ticket_id, mailbox.mailbox_id, created.base,
                                                      participants_of(parsed), token)
        self.plan.rows.audits.append(AuditRow(ticket_id, interaction_id, created.action,
                                              modifier_of(placement.prepared), None, created.after, TICKET_TARGET,
                                              placement.prepared.message.handed_in_by_id))

    def follow_up(self, placement: Placement, ticket_id: int, decision: ThreadDecision, interaction_id: int) -> None:
        parsed = placement.prepared.parsed
        if ticket_id in self.plan.new_tickets:
            self.count_on_new_ticket(ticket_id, bool(parsed.attachments))
        else:
            self.count_on_stored_ticket(ticket_id, parsed, decision, interaction_id)
        facts = self.knowledge.facts.get(ticket_id)
        reopened = ticket_transition('reopen')
        if facts is not None:
            self.knowledge.facts[ticket_id] = TicketFacts(
                facts.ticket_id, facts.mailbox_id, reopened.base if decision.reopen else facts.base_status,
                facts.participants | participants_of(parsed), facts.thread_token)
        if decision.reopen:
            self.plan.rows.audits.append(AuditRow(ticket_id, interaction_id, reopened.action,
                                                  modifier_of(placement.prepared),
                                                  CLOSED, reopened.after, TICKET_TARGET,
                                                  placement.prepared.message.handed_in_by_id))

    def count_on_new_ticket(self, ticket_id: int, has_attachment: bool) -> None:
        new = self.plan.new_tickets[ticket_id]
        new.row = new.row._replace(num_messages=new.row.num_messages + 1,
                                   has_attachment=new.row.has_attachment or has_attachment)

    def count_on_stored_ticket(self, ticket_id: int, parsed: ParsedMail, decision: ThreadDecision,
                               interaction_id: int) -> None:
        updates = self.plan.rows.ticket_updates
        update = updates.get(ticket_id, TicketUpdate())
        answered = update.answered_by
        if answered is None and not is_automatic(parsed):
            answered = interaction_id        # the customer answered: a ticket waiting for it is Open again
        updates[ticket_id] = TicketUpdate(update.messages + 1, update.has_attachment or bool(parsed.attachments),
                                          update.reopen or decision.reopen, answered)

    def add_message_rows(self, placement: Placement, ticket_id: int, interaction_id: int, rule: str) -> None:
        prepared, rows = placement.prepared, self.plan.rows
        message = prepared.message
        raw_id, unwritten = self.ids.raw_id(placement)
        if unwritten:
            rows.raw.append(RawRow(raw_id, prepared.sha256, message.raw, len(message.raw), message.source,
                                   message.envelope_from, list(message.envelope_to) if message.envelope_to else None,
                                   message.peer, message.helo))
        rows.interactions.append(self.interaction_row(placement, ticket_id, interaction_id, rule, raw_id))
        self.add_attachment_rows(prepared.parsed, interaction_id)

    def interaction_row(self, placement: Placement, ticket_id: int, interaction_id: int, rule: str,
                        raw_id: int) -> InteractionRow:
        parsed, prepared = placement.prepared.parsed, placement.prepared
        sender = parsed.from_
        return InteractionRow(
            interaction_id, ticket_id, placement.mailbox.mailbox_id, 'inbound', interaction_type(parsed), RECEIVED,
            parsed.date, parsed.subject, bare_subject(parsed.subject), sender.name if sender else '',
            sender.email if sender else '', jsonb([a.to_json() for a in parsed.to]),
            jsonb([a.to_json() for a in parsed.cc]), parsed.text, parsed.html, prepared.message_id,
            [normalize_message_id(m) for m in parsed.in_reply_to], [normalize_message_id(m) for m in parsed.references],
            rule, parsed.auto_submitted, jsonb(parsed.bounce.to_json()) if parsed.bounce else None,
            self.knowledge.persons.get(sender.email.lower()) if sender else None, raw_id, len(parsed.attachments),
            list(parsed.defects), *self.new_work(placement, ticket_id))

    def new_work(self, placement: Placement, ticket_id: int) -> tuple[str | None, int | None]:
        """(state, queue) of a message: a customer's message on a ticket with no unfinished work is new work in
        the ticket's queue (its latest work item's, else the mailbox's); anything else is not work of its own."""
        parsed = placement.prepared.parsed
        if interaction_type(parsed) != CUSTOMER_EMAIL or ticket_id in self.knowledge.active_work:
            return None, None
        queue_id = self.knowledge.ticket_queues.get(ticket_id) or placement.mailbox.queue_id
        if queue_id is None:
            return None, None
        self.knowledge.active_work.add(ticket_id)
        return QUEUED, queue_id

    def add_attachment_rows(self, parsed: ParsedMail, interaction_id: int) -> None:
        rows = self.plan.rows
        for position, attachment in enumerate(parsed.attachments):
            digest = bytes.fromhex(attachment.sha256)
            if digest not in self.knowledge.stored_blobs:
                rows.blobs.setdefault(digest, BlobRow(digest, attachment.size, attachment.data))
            rows.attachments.append(AttachmentRow(interaction_id, position, attachment.filename,
                                                  attachment.content_type, attachment.content_id, attachment.inline,
                                                  attachment.size, digest))

    def mark_bounced(self, placement: Placement) -> None:
        """A report that one of our own replies failed marks it Failed (see store.interactions); a report that it
        was delayed, relayed or delivered is kept on the ticket and changes nothing."""
        bounce = placement.prepared.parsed.bounce
        if bounce is None or not bounce.original_message_id or not reports_failure(bounce):
            return
        report = ' '.join(filter(None, [bounce.action, bounce.status, 'for ' + ', '.join(bounce.recipients)
                                        if bounce.recipients else '']))
        self.plan.rows.bounced.append(BounceMark(placement.mailbox.mailbox_id,
                                                 normalize_message_id(bounce.original_message_id),
                                                 report or 'delivery failed'))


def quarantined(placement: Placement, reason: str) -> Outcome:
    prepared = placement.prepared
    return Outcome(prepared.message.source, QUARANTINED, reason=reason, message_id=prepared.message_id,
                   mailbox=placement.hint, raw_id=prepared.message.raw_id)


def spool_states(outcomes: list[Outcome]) -> dict[int, str]:
    """What becomes of the spooled messages of a batch: done when any of its mailboxes stored it (or had it
    already), quarantined otherwise."""
    states: dict[int, str] = {}
    for outcome in outcomes:
        if outcome.raw_id is None:
            continue
        if outcome.outcome != QUARANTINED:
            states[outcome.raw_id] = SPOOL_DONE
        else:
            states.setdefault(outcome.raw_id, SPOOL_QUARANTINED)
    return states


def reports_failure(bounce) -> bool:
    """Whether a delivery report says the message failed (RFC 3464 Action: failed, or a 5.x.x status), rather
    than that it was delayed, relayed or delivered."""
    action = (bounce.action or '').strip().lower()
    if action:
        return action == 'failed'
    return (bounce.status or '5').strip().startswith('5')


def modifier_of(prepared: Prepared) -> str:
    """Who an inbound message's audit entries name: the agent who handed it in, else its sender, else postdesk."""
    if prepared.message.handed_in_by:
        return prepared.message.handed_in_by
    return prepared.parsed.from_.email if prepared.parsed.from_ else SYSTEM_MODIFIER


def interaction_type(parsed: ParsedMail) -> str:
    """The Type a ticket shows for the message (SuperOffice ticket message)."""
    if parsed.bounce is not None:
        return BOUNCE_REPORT
    if parsed.auto_submitted is not None:
        return AUTO_REPLY
    return CUSTOMER_EMAIL
