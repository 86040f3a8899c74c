"""What the HTTP API reads, on the event loop (psycopg's async connections): tickets by id with their messages
(many at once, for reads asked for concurrently), a page of tickets with the total that match a filter, one
message with its attachments, an attachment's bytes and a message's original bytes (SuperOffice's TicketEntity
and TicketMessageEntity, seed 002).

Every read takes the agent's scope (the mailboxes whose tickets it may see; None for all) and finds nothing
outside it, exactly as it finds nothing that does not exist. A page costs three statements however many tickets
it holds: the count, the tickets, and the messages of all of them.

A client syncs by `LastChanged gt` the latest LastChanged it has seen. A ticket's LastChanged is its
transaction's start (now()), and a transaction commits later, so a change could become visible with a
LastChanged older than one the client has seen already. A page filtered by LastChanged therefore holds only
changes older than the start of every transaction still open on the database (the horizon): what is left out
comes in the next page, once it has committed.
"""
from __future__ import annotations

import datetime

import psycopg
from psycopg import sql

from ..statuses import HELD, OUTBOX_QUEUED, SPOOL_PENDING
from ..model import MessageDetail, MessageSummary, StoredAttachment, TicketFilter, TicketPage, TicketRecord
from .tickets import MESSAGE_COLUMNS, _TICKET, _record

_IN_SCOPE = sql.SQL('t.mailbox_id = ANY({})')
_BEFORE_HORIZON = sql.SQL(
    "t.last_changed < (SELECT coalesce(min(a.xact_start), 'infinity') FROM pg_stat_activity a "
    "WHERE a.datname = current_database() AND a.backend_type = 'client backend' AND a.pid <> pg_backend_pid())")
# Tickets and their messages in one statement: each ticket's messages as a JSON array PostgreSQL builds.
_TICKETS_WITH_MESSAGES = (
    'SELECT t.*, (SELECT json_agg(json_build_array(' + MESSAGE_COLUMNS + ') ORDER BY interaction_id) '
    '             FROM interaction i WHERE i.ticket_id = t.ticket_id) '
    'FROM (' + _TICKET + 'WHERE t.ticket_id = ANY(%s) AND (%s::int[] IS NULL OR t.mailbox_id = ANY(%s))) AS t')
_MESSAGES_OF = ('SELECT ticket_id, ' + MESSAGE_COLUMNS + ' FROM interaction WHERE ticket_id = ANY(%s) '
                'ORDER BY ticket_id, interaction_id')
_MESSAGE = (
    'SELECT i.interaction_id, i.ticket_id, i.mailbox_id, i.created_at, i.direction, i.type, i.status, i.subject, '
    '       i.from_name, i.from_email, i.to_addresses, i.cc_addresses, i.message_id, i.in_reply_to, i.refs, '
    '       i.thread_rule, i.body_html, i.body_plain, i.auto_submitted, i.person_id, i.sent_date '
    'FROM interaction i WHERE i.interaction_id = %s AND (%s::int[] IS NULL OR i.mailbox_id = ANY(%s))')
_ATTACHMENTS = ('SELECT position + 1, filename, content_type, size, content_id, inline FROM attachment '
                'WHERE interaction_id = %s ORDER BY position')
_ATTACHMENT_BYTES = (
    'SELECT a.position + 1, a.filename, a.content_type, a.size, a.content_id, a.inline, b.data '
    'FROM attachment a JOIN interaction i USING (interaction_id) JOIN blob b ON b.sha256 = a.sha256 '
    'WHERE a.interaction_id = %s AND a.position = %s - 1 AND (%s::int[] IS NULL OR i.mailbox_id = ANY(%s))')
# The bytes as the sender sent them (postdesk's own Received: header left out); for a message postdesk sent, the
# exact bytes handed to the relay.
_RAW = (
    'SELECT coalesce((SELECT substr(r.data, r.trace_len + 1) FROM raw_message r WHERE r.raw_id = i.raw_id), '
    '                (SELECT o.data FROM outbox o WHERE o.interaction_id = i.interaction_id '
    '                 ORDER BY o.outbox_id LIMIT 1)) '
    'FROM interaction i WHERE i.interaction_id = %s AND (%s::int[] IS NULL OR i.mailbox_id = ANY(%s))')
_DEPTHS = sql.SQL('SELECT (SELECT count(*) FROM raw_message WHERE state = {}), '
                  '(SELECT count(*) FROM outbox WHERE state = {}), '
                  '(SELECT count(*) FROM quarantine WHERE state = {})').format(
    sql.Literal(SPOOL_PENDING), sql.Literal(OUTBOX_QUEUED), sql.Literal(HELD))


async def _rows(conn: psycopg.AsyncConnection, query, params, binary: bool = False) -> list[tuple]:
    cursor = await conn.execute(query, params, binary=binary)
    return await cursor.fetchall()


async def messages_of(conn: psycopg.AsyncConnection, ticket_ids: list[int]) -> dict[int, tuple[MessageSummary, ...]]:
    found: dict[int, list[MessageSummary]] = {ticket_id: [] for ticket_id in ticket_ids}
    if ticket_ids:
        for row in await _rows(conn, _MESSAGES_OF, (ticket_ids,)):
            found[row[0]].append(MessageSummary(*row[1:]))
    return {ticket_id: tuple(messages) for ticket_id, messages in found.items()}


async def ticket_views(conn: psycopg.AsyncConnection, ticket_ids: list[int],
                       scope: list[int] | None) -> dict[int, TicketRecord]:
    """The tickets with their messages, by id, of those that exist and are in scope (one statement)."""
    rows = await _rows(conn, _TICKETS_WITH_MESSAGES, (ticket_ids, scope, scope))
    return {row[0]: _record(row[:-1], tuple(message_summary(m) for m in row[-1] or ())) for row in rows}


def message_summary(values: list) -> MessageSummary:
    """A message from the JSON array the ticket's query aggregates (its date comes as ISO 8601 text)."""
    values = list(values)
    values[1] = datetime.datetime.fromisoformat(values[1])
    return MessageSummary(*values)


def conditions(wanted: TicketFilter, scope: list[int] | None) -> tuple[sql.Composable, list]:
    """The WHERE clause of a filter, with its parameters."""
    parts, params = [sql.SQL('true')], []
    for clause, value in ((_IN_SCOPE, scope), (sql.SQL('t.base_status = {}'), wanted.base_status),
                          (sql.SQL('t.mailbox_id = {}'), wanted.mailbox_id),
                          (sql.SQL('t.last_changed > {}'), wanted.changed_after)):
        if value is not None:
            parts.append(clause.format(sql.Placeholder()))
            params.append(value)
    if wanted.changed_after is not None:
        parts.append(_BEFORE_HORIZON)
    if wanted.owned_by == 0:
        parts.append(sql.SQL('t.owned_by IS NULL'))
    elif wanted.owned_by is not None:
        parts.append(sql.SQL('t.owned_by = {}').format(sql.Placeholder()))
        params.append(wanted.owned_by)
    return sql.SQL(' AND ').join(parts), params


async def ticket_page(conn: psycopg.AsyncConnection, wanted: TicketFilter, scope: list[int] | None) -> TicketPage:
    """The tickets in scope that match, newest change first, one page of them with their messages."""
    where, params = conditions(wanted, scope)
    total = (await _rows(conn, sql.SQL('SELECT count(*) FROM ticket t WHERE {}').format(where), params))[0][0]
    page = await _rows(conn, sql.SQL(_TICKET + 'WHERE {} ORDER BY t.last_changed DESC, t.ticket_id DESC '
                                     'LIMIT %s OFFSET %s').format(where), params + [wanted.top, wanted.skip])
    messages = await messages_of(conn, [row[0] for row in page]) if page else {}
    return TicketPage(total, tuple(_record(row, messages[row[0]]) for row in page))


async def message_view(conn: psycopg.AsyncConnection, interaction_id: int,
                       scope: list[int] | None) -> MessageDetail | None:
    rows = await _rows(conn, _MESSAGE, (interaction_id, scope, scope))
    if not rows:
        return None
    values = list(rows[0])
    values[13], values[14] = tuple(values[13] or ()), tuple(values[14] or ())
    attachments = tuple(StoredAttachment(*row) for row in await _rows(conn, _ATTACHMENTS, (interaction_id,)))
    return MessageDetail(*values, attachments=attachments)


async def attachment_bytes(conn: psycopg.AsyncConnection, interaction_id: int, number: int,
                           scope: list[int] | None) -> tuple[StoredAttachment, bytes] | None:
    """The n-th attachment of a message (1 for the first) and its stored bytes."""
    rows = await _rows(conn, _ATTACHMENT_BYTES, (interaction_id, number, scope, scope), binary=True)
    if not rows:
        return None
    return StoredAttachment(*rows[0][:6]), bytes(rows[0][6])


async def raw_bytes(conn: psycopg.AsyncConnection, interaction_id: int, scope: list[int] | None) -> bytes | None:
    rows = await _rows(conn, _RAW, (interaction_id, scope, scope), binary=True)
    if not rows or rows[0][0] is None:
        return None
    return bytes(rows[0][0])


async def depths(conn: psycopg.AsyncConnection) -> dict[str, int]:
    """How many messages wait in the spool, the outbox and the quarantine (for /metrics)."""
    rows = await _rows(conn, _DEPTHS, ())
    spool, outbox, quarantine = rows[0]
    return {'spool': spool, 'outbox': outbox, 'quarantine': quarantine}
