"""Tickets (SuperOffice's TicketEntity, seed 002): reading one with its messages, listing them, locking one for a
reply and recording what the reply did to it, flagging one for an agent's attention, merging one into another.
"""
from __future__ import annotations

import datetime
from collections.abc import Iterator

import psycopg
from psycopg import sql

from ..model import MessageSummary, Tag, TicketForReply, TicketRecord
from ..statuses import (CLOSED_BASE, MERGED_HERE_ACTION, SYSTEM_MODIFIER, TICKET_TARGET, Transition,
                        ticket_transition)


class TicketNotFound(LookupError):
    pass


# A ticket's tags in their order, each as [its id, its name, its tooltip].
_TAGS = ("CASE WHEN cardinality(t.tags) = 0 THEN '[]'::json ELSE "
         '(SELECT json_agg(json_build_array(g.tag_id, u.name, g.tooltip) ORDER BY u.n) '
         ' FROM unnest(t.tags) WITH ORDINALITY AS u (name, n) LEFT JOIN tag g ON g.name = u.name) END')
_TICKET = (
    'SELECT t.ticket_id, t.title, t.created_at, t.last_changed, t.base_status, t.status, t.category, '
    '       t.priority, t.owned_by, a.full_name, t.person_id, p.full_name, p.email, t.from_address, '
    '       t.connect_id, t.num_messages, t.num_replies, t.has_attachment, ' + _TAGS + ', t.replied_at, t.closed_at, '
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
    values[18] = tuple(Tag(tag_id, name, tooltip or '') for tag_id, name, tooltip in values[18] or ())
    return TicketRecord(*values, messages=messages)


MESSAGE_COLUMNS = ('interaction_id, created_at, from_name, from_email, subject, message_id, type, thread_rule, '
                   'num_attachments, direction, status, person_id')


def ticket_messages(conn: psycopg.Connection, ticket_id: int) -> tuple[MessageSummary, ...]:
    rows = conn.execute('SELECT ' + MESSAGE_COLUMNS + ' FROM interaction WHERE ticket_id = %s ORDER BY interaction_id',
                        (ticket_id,)).fetchall()
    return tuple(MessageSummary(*row) for row in rows)


LIST_BATCH = 500


def list_tickets(conn: psycopg.Connection, limit: int | None = None,
                 since: datetime.datetime | None = None) -> Iterator[TicketRecord]:
    """Tickets in id order, without their messages: at most `limit`, those changed at or after `since`. Streamed
    through a server-side cursor, LIST_BATCH rows at a time, so memory stays the same for any number of tickets
    (the cursor's transaction lasts as long as the listing)."""
    with conn.transaction():
        with conn.cursor(name='ticket_list') as cursor:
            cursor.itersize = LIST_BATCH
            cursor.execute(_TICKET + 'WHERE (%(since)s::timestamptz IS NULL OR t.last_changed >= %(since)s) '
                           'ORDER BY t.ticket_id LIMIT %(limit)s', {'since': since, 'limit': limit})
            for row in cursor:
                yield _record(row)


def lock_ticket_for_reply(conn: psycopg.Connection, ticket_id: int) -> TicketForReply | None:
    """The ticket, locked until the transaction ends (two replies at once are written one after the other)."""
    row = conn.execute(
        'SELECT t.ticket_id, t.title, t.base_status, t.status, t.thread_token, t.created_at, m.mailbox_id, m.address, '
        "       m.name, p.email, coalesce(p.full_name, ''), p.person_id "
        'FROM ticket t JOIN mailbox m USING (mailbox_id) LEFT JOIN person p USING (person_id) '
        'WHERE t.ticket_id = %s FOR UPDATE OF t', (ticket_id,)).fetchone()
    return TicketForReply(*row) if row is not None else None


def record_reply(conn: psycopg.Connection, ticket_id: int, transition: Transition, has_attachment: bool) -> None:
    """Counters and status after a reply: closed (send and close), left open, or waiting for the customer; a
    reply with attachments makes the ticket one that has some."""
    conn.execute(
        'UPDATE ticket SET num_replies = num_replies + 1, num_messages = num_messages + 1, replied_at = now(), '
        '  last_changed = now(), base_status = %(base)s, status = %(status)s, '
        '  has_attachment = has_attachment OR %(attached)s, '
        '  closed_at = CASE WHEN %(base)s = %(closed)s THEN now() ELSE NULL END WHERE ticket_id = %(ticket)s',
        {'base': transition.base, 'status': transition.after, 'closed': CLOSED_BASE, 'ticket': ticket_id,
         'attached': has_attachment})


def flag_ticket(conn: psycopg.Connection, ticket_id: int | None, reason: str) -> None:
    """Mark a ticket for an agent's attention (a reply that could not be delivered)."""
    if ticket_id is not None:
        conn.execute('UPDATE ticket SET flagged = %s, last_changed = now() WHERE ticket_id = %s', (reason, ticket_id))


_ABSORB = (
    'WITH x AS (SELECT num_messages, num_replies, has_attachment FROM ticket WHERE ticket_id = %(merged)s), '
    'k AS (UPDATE ticket SET num_messages = ticket.num_messages + x.num_messages, '
    '        num_replies = ticket.num_replies + x.num_replies, has_attachment = ticket.has_attachment OR '
    '        x.has_attachment, last_changed = now() FROM x WHERE ticket_id = %(kept)s RETURNING ticket.status) '
    'INSERT INTO status_audit (ticket_id, action, modifier, status_before, status_after, target) '
    'SELECT %(kept)s, %(here)s, %(modifier)s, k.status, k.status, %(target)s FROM k')
_CLOSE_MERGED = (
    'WITH before AS (SELECT status FROM ticket WHERE ticket_id = %(merged)s), '
    'closed AS (UPDATE ticket SET base_status = %(base)s, status = %(after)s, closed_at = now(), '
    '           connect_id = %(kept)s, num_messages = 0, num_replies = 0, last_changed = now() '
    '           WHERE ticket_id = %(merged)s RETURNING ticket_id) '
    'INSERT INTO status_audit (ticket_id, action, modifier, status_before, status_after, target) '
    'SELECT %(merged)s, %(action)s, %(modifier)s, before.status, %(after)s, %(target)s FROM before, closed')


def merge_tickets(conn: psycopg.Connection, merges: list[tuple[int, int]]) -> None:
    """Each (merged, kept): the merged ticket's messages, outbox rows and waiting references move to the kept
    ticket, whose counters add the merged one's; the merged ticket is closed with ConnectId pointing to the kept
    one. Both are audited."""
    merge = ticket_transition('merge')
    for merged, kept in merges:
        params = {'merged': merged, 'kept': kept, 'here': '%s: %d' % (MERGED_HERE_ACTION, merged),
                  'action': merge.audit_action(str(kept)), 'modifier': SYSTEM_MODIFIER, 'target': TICKET_TARGET,
                  'base': merge.base, 'after': merge.after}
        for table in ('interaction', 'outbox', 'thread_wait'):
            conn.execute(sql.SQL('UPDATE {} SET ticket_id = %s WHERE ticket_id = %s').format(
                sql.Identifier(table)), (kept, merged))
        conn.execute(_ABSORB, params)
        conn.execute(_CLOSE_MERGED, params)
