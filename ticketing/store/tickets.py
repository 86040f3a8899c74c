"""Tickets (SuperOffice's TicketEntity, seed 002): reading one with its messages, listing them, locking one for a
reply and recording what the reply did to it, flagging one for an agent's attention.
"""
from __future__ import annotations

from collections.abc import Iterator

import psycopg

from ..model import MessageSummary, TicketForReply, TicketRecord
from ..statuses import CLOSED_BASE, Transition


class TicketNotFound(LookupError):
    pass


_TICKET = (
    'SELECT t.ticket_id, t.title, t.created_at, t.last_changed, t.base_status, t.status, t.category, '
    '       t.priority, t.owned_by, a.full_name, t.person_id, p.full_name, p.email, t.from_address, '
    '       t.connect_id, t.num_messages, t.num_replies, t.has_attachment, t.tags, t.replied_at, t.closed_at, '
    '       t.mailbox_id, m.address, t.custom_fields, t.flagged, t.queue_id, t.workbin_id, t.deadline, '
    '       p.contact_name '
    'FROM ticket t JOIN mailbox m USING (mailbox_id) LEFT JOIN person p USING (person_id) '
    'LEFT JOIN agent a ON a.agent_id = t.owned_by ')


def ticket_record(conn: psycopg.Connection, ticket_id: int) -> TicketRecord:
    """One ticket, its messages included. Raises TicketNotFound."""
    row = conn.execute(_TICKET + 'WHERE t.ticket_id = %s', (ticket_id,)).fetchone()
    if row is None:
        raise TicketNotFound('no ticket %d' % ticket_id)
    return _record(row, ticket_messages(conn, ticket_id))


def _record(row: tuple, messages: tuple[MessageSummary, ...] = ()) -> TicketRecord:
    values = list(row)
    values[18] = tuple(values[18] or ())          # tags
    return TicketRecord(*values, messages=messages)


MESSAGE_COLUMNS = ('interaction_id, created_at, from_name, from_email, subject, message_id, type, thread_rule, '
                   'num_attachments, direction, status')


def ticket_messages(conn: psycopg.Connection, ticket_id: int) -> tuple[MessageSummary, ...]:
    rows = conn.execute('SELECT ' + MESSAGE_COLUMNS + ' FROM interaction WHERE ticket_id = %s ORDER BY interaction_id',
                        (ticket_id,)).fetchall()
    return tuple(MessageSummary(*row) for row in rows)


def list_tickets(conn: psycopg.Connection) -> Iterator[TicketRecord]:
    """Every ticket, in id order, without its messages."""
    for row in conn.execute(_TICKET + 'ORDER BY t.ticket_id').fetchall():
        yield _record(row)


def lock_ticket_for_reply(conn: psycopg.Connection, ticket_id: int) -> TicketForReply | None:
    """The ticket, locked until the transaction ends (two replies at once are written one after the other)."""
    row = conn.execute(
        'SELECT t.ticket_id, t.title, t.base_status, t.status, t.thread_token, t.created_at, m.mailbox_id, m.address, '
        "       m.name, p.email, coalesce(p.full_name, '') "
        'FROM ticket t JOIN mailbox m USING (mailbox_id) LEFT JOIN person p USING (person_id) '
        'WHERE t.ticket_id = %s FOR UPDATE OF t', (ticket_id,)).fetchone()
    return TicketForReply(*row) if row is not None else None


def record_reply(conn: psycopg.Connection, ticket_id: int, transition: Transition) -> None:
    """Counters and status after a reply: closed (send and close), left open, or waiting for the customer."""
    conn.execute(
        'UPDATE ticket SET num_replies = num_replies + 1, num_messages = num_messages + 1, replied_at = now(), '
        '  last_changed = now(), base_status = %(base)s, status = %(status)s, '
        '  closed_at = CASE WHEN %(base)s = %(closed)s THEN now() ELSE NULL END WHERE ticket_id = %(ticket)s',
        {'base': transition.base, 'status': transition.after, 'closed': CLOSED_BASE, 'ticket': ticket_id})


def flag_ticket(conn: psycopg.Connection, ticket_id: int | None, reason: str) -> None:
    """Mark a ticket for an agent's attention (a reply that could not be delivered)."""
    if ticket_id is not None:
        conn.execute('UPDATE ticket SET flagged = %s, last_changed = now() WHERE ticket_id = %s', (reason, ticket_id))
