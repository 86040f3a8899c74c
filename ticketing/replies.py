"""Agents' replies: iService's sendleaveopen and its send-and-close sibling (seed 000), stored in one transaction.

A reply answers the ticket's latest customer message (or the interaction named). It is composed by
`outbound.compose` (subject with or without the `[ref#: T-I]` reference, final HTML and plain text, threading
headers) and written in one transaction: the outbound interaction (`Agent Email`, status `Unsent`), its
attachments, the outbox row holding the exact MIME bytes, the status audit, and the ticket's new state (closed, or
left open, or waiting for the customer with `expectReply`). Delivery (`ticketing.delivery`) later marks it `Sent`
or `Failed`. The result is iService's response object: `errors`, `errorDetails`, `row` and `details` (the question),
`response` (the reply's `row` and `details`, with `subjectRef`, `responseSubject`, `responseFinalHtml`,
`responseFinalPlain` and the status audit).
"""
from __future__ import annotations

import datetime
import email.utils
import zoneinfo
from dataclasses import dataclass

import psycopg

from ingest.sanitize import html_to_text, sanitize_html, strip_tags
from outbound.compose import (ComposedReply, ComposeError, HtmlPolicy, OutgoingAttachment, Party, Quoted, ReplyDraft,
                              compose_reply, new_message_id)

from . import store
from .threads import ticket_reference

WAITING_FOR_CUSTOMER = 'Waiting for customer'
AGENT_EMAIL, AUTO_ACK = 'Agent Email', 'Auto Acknowledgement'
# Replies are cleaned by the inbound allowlist: what a customer receives is what an inbound message may contain.
HTML_POLICY = HtmlPolicy(sanitize=sanitize_html, to_text=html_to_text, strip_tags=strip_tags)


class ReplyError(Exception):
    """The reply cannot be made: no such ticket, nobody to send it to, a bad address."""


@dataclass(frozen=True)
class Answer:
    """iService's `answer` object, as much of it as a mail pipeline uses."""
    ticket_id: int
    body_html: str
    leave_open: bool = False
    expect_reply: bool = False
    add_subject_ref_num: bool = True
    supress_subject_ref: bool = False
    dest_email: tuple[str, ...] = ()          # To; default: the ticket's customer
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    attachments: tuple[OutgoingAttachment, ...] = ()
    note: str = ''
    agent: str = 'postdesk'                   # who sends it (agent login or name), for the audit
    in_response_to: int | None = None         # the interaction answered; default: the latest customer message


@dataclass(frozen=True)
class TicketForReply:
    ticket_id: int
    title: str
    base_status: str
    status: str
    thread_token: str
    created_at: datetime.datetime
    mailbox_id: int
    mailbox_address: str
    mailbox_name: str
    customer_email: str | None
    customer_name: str


@dataclass(frozen=True)
class Question:
    """The interaction being answered, as the reply quotes it."""
    interaction_id: int
    subject: str
    subject_bare: str
    type: str
    status: str
    date: datetime.datetime
    from_name: str
    from_email: str
    body_html: str | None
    body_plain: str
    message_id: str
    references: tuple[str, ...]


# ---------------------------------------------------------------------------------------------- the reply

def send_reply(conn: psycopg.Connection, answer: Answer, timezone: str = 'UTC') -> dict:
    """Compose the reply and queue it, all in one transaction; iService's response object."""
    with conn.transaction():
        ticket = lock_ticket(conn, answer.ticket_id)
        question = find_question(conn, ticket.ticket_id, answer.in_response_to)
        interaction_id = next_interaction_id(conn)
        draft = draft_for(ticket, question, answer, interaction_id, display_zone(timezone))
        try:
            composed = compose_reply(draft)
        except ComposeError as exc:
            raise ReplyError(str(exc)) from exc
        store_outbound(conn, ticket, question, draft, composed, AGENT_EMAIL, 'reply', answer.agent, answer.note,
                       user_data={'leaveOpen': answer.leave_open, 'expectReply': answer.expect_reply})
        update_ticket_after_reply(conn, ticket, interaction_id, answer)
        return response_object(conn, ticket, question, composed, interaction_id)


def display_zone(name: str) -> datetime.tzinfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ReplyError('unknown time zone %r in the configuration ([outbound] timezone)' % name) from exc


def lock_ticket(conn: psycopg.Connection, ticket_id: int) -> TicketForReply:
    row = conn.execute(
        'SELECT t.ticket_id, t.title, t.base_status, t.status, t.thread_token, t.created_at, m.mailbox_id, m.address, '
        "       m.name, p.email, coalesce(p.full_name, '') "
        'FROM ticket t JOIN mailbox m USING (mailbox_id) LEFT JOIN person p USING (person_id) '
        'WHERE t.ticket_id = %s FOR UPDATE OF t', (ticket_id,)).fetchone()
    if row is None:
        raise ReplyError('no ticket %d' % ticket_id)
    ticket = TicketForReply(*row)
    if ticket.base_status == 'deleted':
        raise ReplyError('ticket %d is deleted' % ticket_id)
    return ticket


def find_question(conn: psycopg.Connection, ticket_id: int, interaction_id: int | None) -> Question | None:
    """The interaction answered: the one named, else the latest customer message, else the latest inbound one."""
    row = conn.execute(
        'SELECT interaction_id, subject, subject_bare, type, status, coalesce(sent_date, created_at), from_name, '
        '       from_email, body_html, body_plain, message_id, refs '
        'FROM interaction WHERE ticket_id = %(ticket)s '
        "  AND (interaction_id = %(named)s OR (%(named)s::bigint IS NULL AND direction = 'inbound')) "
        "ORDER BY (type = 'Customer Email') DESC, interaction_id DESC LIMIT 1",
        {'ticket': ticket_id, 'named': interaction_id}).fetchone()
    if row is None and interaction_id is not None:
        raise ReplyError('interaction %d is not on ticket %d' % (interaction_id, ticket_id))
    if row is None:
        return None
    values = list(row)
    values[-1] = tuple(values[-1] or ())
    return Question(*values)


def next_interaction_id(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT nextval(pg_get_serial_sequence('interaction', 'interaction_id'))").fetchone()[0]


def draft_for(ticket: TicketForReply, question: Question | None, answer: Answer, interaction_id: int,
              zone: datetime.tzinfo, extra_headers: tuple[tuple[str, str], ...] = ()) -> ReplyDraft:
    to = recipients_or_customer(answer.dest_email, ticket)
    domain = domain_of(ticket.mailbox_address)
    now = datetime.datetime.now(datetime.timezone.utc)
    quoted = None
    if question is not None:
        quoted = Quoted(date=question.date.astimezone(zone), name=question.from_name, email=question.from_email,
                        html=question.body_html, text=question.body_plain,
                        message_id=None if question.message_id.endswith('.postdesk.invalid') else question.message_id,
                        references=question.references)
    return ReplyDraft(
        ticket_id=ticket.ticket_id, interaction_id=interaction_id,
        subject=question.subject if question is not None and question.subject_bare else ticket.title,
        body_html=answer.body_html, sender=Party(ticket.mailbox_name, ticket.mailbox_address), to=to,
        message_id=new_message_id(ticket.ticket_id, interaction_id, domain),
        ticket_reference=ticket_reference(ticket.ticket_id, ticket.thread_token, domain), date=now,
        cc=tuple(parties(answer.cc)), bcc=tuple(parties(answer.bcc)), quoted=quoted,
        add_subject_ref=answer.add_subject_ref_num and not answer.supress_subject_ref,
        attachments=answer.attachments, extra_headers=extra_headers, thread_started=ticket.created_at,
        html_policy=HTML_POLICY)


def recipients_or_customer(addresses: tuple[str, ...], ticket: TicketForReply) -> tuple[Party, ...]:
    if addresses:
        return tuple(parties(addresses))
    if not ticket.customer_email:
        raise ReplyError('ticket %d has no customer address; give one with --to' % ticket.ticket_id)
    return (Party(ticket.customer_name if ticket.customer_name != ticket.customer_email else '',
                  ticket.customer_email),)


def parties(addresses: tuple[str, ...]) -> list[Party]:
    found = []
    for name, address in email.utils.getaddresses(list(addresses)):
        if '@' not in address or any(c in address for c in ' \r\n<>'):
            raise ReplyError('not an e-mail address: %r' % address)
        found.append(Party(name, address))
    return found


def domain_of(address: str) -> str:
    return address.rpartition('@')[2].lower() or 'postdesk.invalid'


def store_outbound(conn: psycopg.Connection, ticket: TicketForReply, question: Question | None, draft: ReplyDraft,
                   composed: ComposedReply, kind_name: str, outbox_kind: str, modifier: str, note: str,
                   user_data: dict) -> None:
    """The outbound interaction, its attachments, the outbox row and the `Unsent` audit entry."""
    user_data = dict(user_data, inResponseToID=question.interaction_id if question else None)
    store.insert_outbound(
        conn, store.outbound_interaction_row(ticket.mailbox_id, kind_name, outbox_kind, draft, composed, note=note,
                                             user_data=user_data),
        draft.attachments, store.outbox_row(ticket.mailbox_id, outbox_kind, draft, composed))
    store.add_audit(conn, ticket.ticket_id, draft.interaction_id, 'Queued for delivery', modifier, None, 'Unsent',
                    target='interaction')


def update_ticket_after_reply(conn: psycopg.Connection, ticket: TicketForReply, interaction_id: int,
                              answer: Answer) -> None:
    """Counters and status: closed (send and close), left open, or waiting for the customer (expectReply)."""
    if answer.expect_reply:                 # waiting for the customer is an open state, whatever leave_open says
        base, status, action = 'active', WAITING_FOR_CUSTOMER, 'Sent, left open, expecting a reply'
    elif not answer.leave_open:
        base, status, action = 'closed', 'Closed', 'Sent and closed'
    else:
        base, status, action = 'active', 'Open', 'Sent and left open'
    conn.execute(
        'UPDATE ticket SET num_replies = num_replies + 1, num_messages = num_messages + 1, replied_at = now(), '
        '  last_changed = now(), base_status = %s, status = %s, '
        "  closed_at = CASE WHEN %s = 'closed' THEN now() ELSE NULL END WHERE ticket_id = %s",
        (base, status, base, ticket.ticket_id))
    store.add_audit(conn, ticket.ticket_id, interaction_id, action, answer.agent, ticket.status, status)


# ------------------------------------------------------------------------------------ iService's response

def response_object(conn: psycopg.Connection, ticket: TicketForReply, question: Question | None,
                    composed: ComposedReply, interaction_id: int) -> dict:
    """sendleaveopen's response: the question's `row` and `details`, and the reply's in `response`."""
    question_row = _row(question.interaction_id if question else None, question.date if question else
                        ticket.created_at, question.subject if question else ticket.title,
                        question.type if question else '', ticket.status if question is None else question.status)
    details = {
        'id': str(question.interaction_id) if question else '', 'type': question.type if question else '',
        'tags': [], 'status': question.status if question else '', 'threadID': str(ticket.ticket_id),
        'subject': question.subject if question else ticket.title,
        'subjectBare': question.subject_bare if question else ticket.title,
        'date': _date(question.date if question else ticket.created_at),
        'questionHtml': (question.body_html or '') if question else '',
        'bodyPlain': question.body_plain if question else '',
        'customerName': ticket.customer_name, 'customerAddresses': [ticket.customer_email] if ticket.customer_email
        else [], 'fromAddress': question.from_email if question else '', 'headerFrom': question.from_email
        if question else '', 'statusAudit': audit_entries(conn, ticket.ticket_id,
                                                         question.interaction_id if question else None, 'ticket'),
        'subjectRef': composed.subject_ref, 'responseSubject': composed.subject_bare,
        'responseID': str(interaction_id), 'responseHtml': composed.final_html,
        'responseFinalHtml': composed.final_html, 'responseFinalPlain': composed.final_plain,
        'toAddress': ', '.join(composed.recipients), 'composerAddress': composed.mail_from,
    }
    reply = conn.execute('SELECT created_at, status, note FROM interaction WHERE interaction_id = %s',
                         (interaction_id,)).fetchone()
    created, status, note = reply
    response = {
        'row': _row(interaction_id, created, composed.subject, AGENT_EMAIL, status),
        'details': {'date': _date(created), 'type': AGENT_EMAIL, 'tags': [], 'subject': composed.subject,
                    'subjectBare': composed.subject_bare, 'status': status, 'bodyPlain': composed.final_plain,
                    'bodyHtml': composed.final_html, 'note': note or '', 'messageId': composed.message_id,
                    'attachments': attachment_entries(conn, interaction_id),
                    'statusAudit': audit_entries(conn, ticket.ticket_id, interaction_id, 'interaction')},
    }
    return {'errors': [], 'errorDetails': [], 'row': question_row, 'details': details, 'response': response}


def error_object(message: str) -> dict:
    return {'errors': [message], 'errorDetails': [{'message': message}], 'row': None, 'details': None,
            'response': None}


def _row(interaction_id: int | None, date: datetime.datetime, subject: str, kind: str, status: str) -> dict:
    return {'id': str(interaction_id) if interaction_id else '', 'date': _date(date), 'subject': subject,
            'type': kind, 'tags': [], 'status': status}


def _date(value: datetime.datetime | None) -> str | None:
    return value.astimezone(datetime.timezone.utc).isoformat().replace('+00:00', 'Z') if value else None


def audit_entries(conn: psycopg.Connection, ticket_id: int, interaction_id: int | None, target: str) -> list[dict]:
    """iService's statusAudit: the changes an interaction made to the ticket ('ticket') or its own ('interaction')."""
    rows = conn.execute(
        'SELECT at, action, modifier, status_before, status_after FROM status_audit '
        'WHERE ticket_id = %s AND interaction_id IS NOT DISTINCT FROM %s AND target = %s ORDER BY audit_id',
        (ticket_id, interaction_id, target)).fetchall()
    return [{'timeStamp': '/Date(%d)/' % int(at.timestamp() * 1000), 'date': _date(at), 'action': action,
             'modifierID': None, 'modifierName': modifier, 'topicID': None, 'topicName': None, 'assignedToID': None,
             'assignedToName': None, 'statusID': None, 'statusName': after, 'statusBefore': before}
            for at, action, modifier, before, after in rows]


def attachment_entries(conn: psycopg.Connection, interaction_id: int) -> list[dict]:
    rows = conn.execute('SELECT filename, content_type, size, content_id FROM attachment WHERE interaction_id = %s '
                        'ORDER BY position', (interaction_id,)).fetchall()
    return [{'name': name, 'contentType': kind, 'size': size, 'contentId': cid} for name, kind, size, cid in rows]
