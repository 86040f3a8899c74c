"""An agent answers a ticket: iService's sendleaveopen and its send-and-close sibling (seed 000), in one
transaction.

A reply answers the ticket's latest customer message (or the interaction named). It is composed by
`outbound.compose` from a draft (`ticketing.drafts`) and written whole: the outbound interaction (`Agent Email`,
status `Unsent`), its attachments, the outbox row holding the exact MIME bytes, the status audit, and the
ticket's new state (closed, left open, or waiting for the customer with `expectReply`). Delivery later marks it
`Sent` or `Failed`. The result is iService's response object (`ticketing.formats.iservice`).

Through the API a reply names the interaction it answers (iService's `inResponseToID`): one of a ticket the
agent may not see is unknown, exactly as one that does not exist, and the request's `threadProperties` are kept
on the ticket in the same transaction (nothing is kept when the reply cannot be made).
"""
from __future__ import annotations

from dataclasses import replace

from outbound.compose import ComposeError, compose_reply

from ..drafts import ReplyError, display_zone, draft_for
from ..model import Agent, Answer, AttachmentInfo, Question, StoredReply, TicketForReply, WorkItem
from ..statuses import (AGENT_EMAIL, CLOSED_BASE, DELETED, DRAFT, DRAFT_STATUS, INTERACTION_TARGET, TICKET_TARGET,
                        WORK_TRANSITIONS, interaction_transition, reply_transition)
from ..store import interactions, ticket_edits, tickets, work
from ..store.db import Connection
from ..store.outbox import REPLY_KIND
from ..store.rows import outbound_row, outbox_row
from ..formats.iservice import ReplyReport, response_object


def send_reply(conn: Connection, answer: Answer, timezone: str = 'UTC') -> dict:
    """Compose the reply and queue it, all in one transaction; iService's response object. Raises ReplyError
    (and changes nothing) when the reply cannot be made."""
    with conn.transaction():
        ticket = lock_ticket(conn, answer.ticket_id)
        question = find_question(conn, ticket.ticket_id, answer.in_response_to)
        interaction_id = answer.draft_id or interactions.next_interaction_id(conn)
        draft = draft_for(ticket, question, answer, interaction_id, display_zone(timezone))
        try:
            composed = compose_reply(draft)
        except ComposeError as exc:
            raise ReplyError(str(exc)) from exc
        reply = store_reply(conn, ticket, question, draft, composed, answer)
        question_audit = interactions.audit_entries(conn, ticket.ticket_id,
                                                    question.interaction_id if question else None, TICKET_TARGET)
        case = ticket_edits.case_context(conn, ticket.ticket_id)
        question_files = interactions.attachment_infos(conn, question.interaction_id) if question else ()
        return response_object(ReplyReport(ticket, question, composed, reply, question_audit, case, question_files,
                                           answer.agent))


class UnknownInteraction(ReplyError):
    """No interaction with that id that this agent may see."""


def reply_to_interaction(conn: Connection, agent: Agent, interaction_id: int, answer: Answer,
                         thread_properties: list | None = None, timezone: str = 'UTC') -> dict:
    """iService's sendleaveopen and send: answer the interaction named, as this agent, keeping the thread
    properties; one transaction. Raises UnknownInteraction, or ReplyError (and changes nothing)."""
    with conn.transaction():
        found = ticket_edits.ticket_of_interaction(conn, interaction_id)
        if found is None or not agent.may_see(found[1]):
            raise UnknownInteraction('no interaction %d' % interaction_id)
        if thread_properties:
            kept = ticket_edits.thread_properties_locked(conn, found[0])
            ticket_edits.keep_thread_properties(conn, found[0], merged_properties(kept, thread_properties))
        answer = replace(answer, ticket_id=found[0], in_response_to=interaction_id, agent=agent.login,
                         agent_id=agent.agent_id)
        draft = work.work_item(conn, interaction_id, lock=True)
        if draft is not None and draft.parent_id is not None:        # a draft reply, not a customer's message
            if draft.state != DRAFT:
                raise ReplyError('draft %d was sent or cancelled already' % interaction_id)
            answer = sending_draft(conn, agent, draft, answer)
        return send_reply(conn, answer, timezone)


def merged_properties(kept: list, given: list[dict]) -> list:
    """The thread properties after a reply names some: each given one replaces the kept one of its propertyID
    (or, without an id, its propertyName), in its place; the others are added at the end, and the kept ones it
    does not name stay (a reply sets the properties it names, as iService's form does)."""
    merged = list(kept)
    for prop in given:
        key = property_key(prop)
        place = next((n for n, old in enumerate(merged) if isinstance(old, dict) and property_key(old) == key), None)
        if place is None:
            merged.append(prop)
        else:
            merged[place] = prop
    return merged


def property_key(prop: dict) -> tuple[str, str]:
    named = prop.get('propertyID')
    return ('id', str(named)) if named not in (None, '') else ('name', str(prop.get('propertyName') or ''))


def sending_draft(conn: Connection, agent: Agent, draft: WorkItem, answer: Answer) -> Answer:
    """A draft reply (Genesys Reply/ReplyAll) is sent as itself: it answers what it was started on, under its
    own subject, to its own recipients unless others are given, and its work ends (Completed). Only the agent who
    owns it may send it."""
    if draft.owner_id != agent.agent_id:
        raise ReplyError('draft %d is not yours' % draft.interaction_id)
    work.change_work(conn, draft, WORK_TRANSITIONS['Send'], agent.login, None, owner_id=None, workbin_id=None)
    recipients = answer.dest_email or tuple(a['email'] for a in draft.to_addresses if a.get('email'))
    return replace(answer, in_response_to=draft.parent_id, subject=draft.subject, draft_id=draft.interaction_id,
                   dest_email=recipients)


def lock_ticket(conn: Connection, ticket_id: int) -> TicketForReply:
    ticket = tickets.lock_ticket_for_reply(conn, ticket_id)
    if ticket is None:
        raise ReplyError('no ticket %d' % ticket_id)
    if ticket.base_status == DELETED:
        raise ReplyError('ticket %d is deleted' % ticket_id)
    return ticket


def find_question(conn: Connection, ticket_id: int, interaction_id: int | None) -> Question | None:
    """The interaction answered: the one named, else the latest customer message, else the latest inbound one."""
    question = interactions.find_question(conn, ticket_id, interaction_id)
    if question is None and interaction_id is not None:
        raise ReplyError('interaction %d is not on ticket %d' % (interaction_id, ticket_id))
    return question


def store_reply(conn: Connection, ticket: TicketForReply, question: Question | None, draft, composed,
                answer: Answer) -> StoredReply:
    """The outbound interaction, its attachments, the outbox row, its `Unsent` audit entry, and the ticket's new
    state with its audit entry."""
    queued = interaction_transition('queue')
    user_data = {'leaveOpen': answer.leave_open, 'expectReply': answer.expect_reply,
                 'inResponseToID': question.interaction_id if question else None}
    created_at = interactions.insert_outbound(
        conn, outbound_row(ticket.mailbox_id, AGENT_EMAIL, REPLY_KIND, draft, composed, queued.after,
                           note=answer.note, user_data=user_data),
        draft.attachments, outbox_row(ticket.mailbox_id, REPLY_KIND, draft, composed),
        replaces_draft=answer.draft_id is not None)
    interactions.add_audit(conn, ticket.ticket_id, draft.interaction_id, queued.action, answer.agent,
                           DRAFT_STATUS if answer.draft_id else None, queued.after, target=INTERACTION_TARGET,
                           modifier_id=answer.agent_id)
    change = reply_transition(answer.leave_open, answer.expect_reply)
    tickets.record_reply(conn, ticket.ticket_id, change, bool(draft.attachments))
    interactions.add_audit(conn, ticket.ticket_id, draft.interaction_id, change.action, answer.agent, ticket.status,
                           change.after, modifier_id=answer.agent_id)
    attachments = tuple(AttachmentInfo(a.filename, a.content_type, len(a.data), a.content_id)
                        for a in draft.attachments)
    audit = interactions.audit_entries(conn, ticket.ticket_id, draft.interaction_id, None)   # its own, and the ticket's
    return StoredReply(draft.interaction_id, created_at, queued.after, answer.note or '', attachments, audit,
                       change.base == CLOSED_BASE)
