"""Reading tickets back as SuperOffice TicketEntity objects (seed 002: SaveTicketEntity's entity), with their
messages (TicketMessageId, CreatedAt, Author, Subject, MessageId, Type, ThreadRule, NumAttachments).
"""
from __future__ import annotations

import datetime

import psycopg

BASE_STATUS_NAMES = {'active': 'Active', 'closed': 'Closed', 'postponed': 'Postponed', 'deleted': 'Deleted'}


class TicketNotFound(LookupError):
    pass


def _iso(value: datetime.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _author(name: str, address: str) -> str:
    if name and address:
        return '%s <%s>' % (name, address)
    return name or address


def ticket_entity(conn: psycopg.Connection, ticket_id: int) -> dict:
    """The TicketEntity of one ticket, messages included. Raises TicketNotFound."""
    row = conn.execute(
        'SELECT t.ticket_id, t.title, t.created_at, t.last_changed, t.base_status, t.status, t.category, '
        '       t.priority, t.owned_by, a.full_name, t.person_id, p.full_name, p.email, t.from_address, '
        '       t.connect_id, t.num_messages, t.num_replies, t.has_attachment, t.tags, t.replied_at, t.closed_at, '
        '       t.mailbox_id, m.address, t.custom_fields, t.flagged, t.queue_id, t.workbin_id '
        'FROM ticket t JOIN mailbox m USING (mailbox_id) LEFT JOIN person p USING (person_id) '
        'LEFT JOIN agent a ON a.agent_id = t.owned_by WHERE t.ticket_id = %s', (ticket_id,)).fetchone()
    if row is None:
        raise TicketNotFound('no ticket %d' % ticket_id)
    (tid, title, created, changed, base, status, category, priority, owner_id, owner_name, person_id, person_name,
     person_email, from_address, connect_id, num_messages, num_replies, has_attachment, tags, replied, closed,
     mailbox_id, mailbox_address, custom_fields, flagged, queue_id, workbin_id) = row
    return {
        'TicketId': tid, 'Title': title, 'CreatedAt': _iso(created), 'LastChanged': _iso(changed),
        'BaseStatus': BASE_STATUS_NAMES.get(base, base), 'Status': status, 'Category': category,
        'Priority': priority,
        'OwnedBy': {'AssociateId': owner_id, 'FullName': owner_name} if owner_id else None,
        'Person': ({'PersonId': person_id, 'FullName': person_name or '', 'Email': person_email}
                   if person_id else None),
        'FromAddress': from_address, 'ConnectId': connect_id, 'NumMessages': num_messages,
        'NumReplies': num_replies, 'HasAttachment': has_attachment, 'Tags': list(tags), 'RepliedAt': _iso(replied),
        'ClosedAt': _iso(closed), 'MailboxId': mailbox_id, 'Mailbox': mailbox_address, 'Flagged': flagged,
        'QueueId': queue_id, 'WorkbinId': workbin_id, 'CustomFields': custom_fields,
        'Messages': ticket_messages(conn, tid),
    }


def ticket_messages(conn: psycopg.Connection, ticket_id: int) -> list[dict]:
    rows = conn.execute(
        'SELECT interaction_id, created_at, from_name, from_email, subject, message_id, type, thread_rule, '
        '       num_attachments, direction, status '
        'FROM interaction WHERE ticket_id = %s ORDER BY interaction_id', (ticket_id,)).fetchall()
    return [{'TicketMessageId': iid, 'CreatedAt': _iso(created), 'Author': _author(name, address),
             'Subject': subject, 'MessageId': message_id, 'Type': kind, 'ThreadRule': rule,
             'NumAttachments': attachments, 'Direction': direction, 'Status': status}
            for iid, created, name, address, subject, message_id, kind, rule, attachments, direction, status in rows]


def list_tickets(conn: psycopg.Connection, limit: int | None = None) -> list[dict]:
    rows = conn.execute(
        'SELECT ticket_id, title, base_status, status, num_messages, num_replies, last_changed, from_address, '
        '       connect_id '
        'FROM ticket ORDER BY ticket_id' + (' LIMIT %s' if limit else ''), (limit,) if limit else ()).fetchall()
    return [{'TicketId': tid, 'Title': title, 'BaseStatus': BASE_STATUS_NAMES.get(base, base), 'Status': status,
             'NumMessages': messages, 'NumReplies': replies, 'LastChanged': _iso(changed), 'FromAddress': sender,
             'ConnectId': connect_id}
            for tid, title, base, status, messages, replies, changed, sender, connect_id in rows]
