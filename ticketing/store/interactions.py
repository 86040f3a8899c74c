"""Interactions (iService, seed 000: every inbound and outbound message of a ticket) and their status audit:
writing an outbound message with its attachments and outbox row, changing an interaction's status, reading the
message a reply answers, and the audit entries and attachments an answer reports.
"""
from __future__ import annotations

import hashlib

import psycopg
from psycopg import sql

from ..model import AttachmentInfo, AuditEntry, Question
from ..statuses import (CUSTOMER_EMAIL, INTERACTION_TARGET, INTERACTION_TRANSITIONS, SENT, SYSTEM_MODIFIER,
                        TICKET_TARGET)
from . import events
from .rows import AttachmentRow, BlobRow, BounceMark, OutboundRow, OutboxRow
from .tickets import flag_ticket
from .writes import insert_blobs, insert_rows, insert_statement


def next_interaction_id(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT nextval(pg_get_serial_sequence('interaction', 'interaction_id'))").fetchone()[0]


def insert_outbound(conn: psycopg.Connection, interaction: OutboundRow, attachments, outbox: OutboxRow,
                    replaces_draft: bool = False):
    """One outbound message: its interaction (a new row, or the draft it was written in), its attachments (bytes
    stored once by sha256), its outbox row; the delivery workers are woken. Returns the interaction's created_at."""
    if replaces_draft:
        created_at = update_draft(conn, interaction)
    else:
        created_at = conn.execute(insert_statement('interaction', OutboundRow, ' RETURNING created_at'),
                                  interaction).fetchone()[0]
    blobs, rows = [], []
    for position, attachment in enumerate(attachments):
        digest = hashlib.sha256(attachment.data).digest()
        blobs.append(BlobRow(digest, len(attachment.data), attachment.data))
        rows.append(AttachmentRow(interaction.interaction_id, position, attachment.filename, attachment.content_type,
                                  attachment.content_id, attachment.content_id is not None, len(attachment.data),
                                  digest))
    insert_blobs(conn, blobs)
    insert_rows(conn, 'attachment', AttachmentRow, rows)
    insert_rows(conn, 'outbox', OutboxRow, [outbox])
    events.notify(conn, events.OUTBOX_CHANNEL, str(interaction.interaction_id))
    return created_at


def update_draft(conn: psycopg.Connection, row: OutboundRow) -> object:
    """A draft reply becomes the message sent: every column of the row written over it."""
    names = [n for n in OutboundRow._fields if n != 'interaction_id']
    statement = sql.SQL('UPDATE interaction SET {} WHERE interaction_id = %s RETURNING created_at').format(
        sql.SQL(', ').join(sql.SQL('{} = %s').format(sql.Identifier(n)) for n in names))
    return conn.execute(statement, [getattr(row, n) for n in names] + [row.interaction_id]).fetchone()[0]


def add_audit(conn: psycopg.Connection, ticket_id: int, interaction_id: int | None, action: str, modifier: str,
              before: str | None, after: str | None, target: str = TICKET_TARGET,
              modifier_id: int | None = None) -> None:
    """One status change: of the ticket (target 'ticket') or of the interaction itself ('interaction'), with the
    agent's id when an agent made it."""
    conn.execute('INSERT INTO status_audit (ticket_id, interaction_id, action, modifier, status_before, '
                 'status_after, target, modifier_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)',
                 (ticket_id, interaction_id, action, modifier, before, after, target, modifier_id))


def change_interaction_status(conn: psycopg.Connection, ticket_id: int, interaction_id: int, transition_name: str,
                              detail: str | None = None, modifier: str = SYSTEM_MODIFIER) -> bool:
    """Apply a transition of the interaction's status, audited (a Sent one gets its sent date), and the ticket
    changes with it (its LastChanged, hence its ETag: the entity lists its messages' statuses). False when the
    interaction does not exist, already has that status, or the table does not allow it from its status."""
    conn.execute('SELECT 1 FROM ticket WHERE ticket_id = %s FOR UPDATE', (ticket_id,))   # ticket, then interaction:
    before = conn.execute('SELECT status FROM interaction WHERE interaction_id = %s FOR UPDATE',  # every writer's order
                          (interaction_id,)).fetchone()
    transition = INTERACTION_TRANSITIONS[transition_name]
    if before is None or before[0] == transition.after or not transition.allows(before[0]):
        return False
    conn.execute('UPDATE interaction SET status = %s, sent_date = CASE WHEN %s = %s THEN now() ELSE sent_date END '
                 'WHERE interaction_id = %s', (transition.after, transition.after, SENT, interaction_id))
    conn.execute('UPDATE ticket SET last_changed = now() WHERE ticket_id = %s', (ticket_id,))
    add_audit(conn, ticket_id, interaction_id, transition.audit_action(detail), modifier, before[0],
              transition.after, target=INTERACTION_TARGET)
    return True


def mark_bounced_replies(conn: psycopg.Connection, bounced: list[BounceMark]) -> list[int]:
    """A delivery report about one of our own messages marks that outbound interaction Failed, audited; the
    tickets whose replies bounced are returned (to be flagged for an agent)."""
    flagged = []
    for mailbox_id, message_id, report in bounced:
        found = conn.execute("SELECT interaction_id, ticket_id FROM interaction WHERE mailbox_id = %s "
                             "AND message_id = %s AND direction = 'outbound'", (mailbox_id, message_id)).fetchone()
        if found is None:
            continue
        interaction_id, ticket_id = found
        if change_interaction_status(conn, ticket_id, interaction_id, 'bounce', report):
            flag_ticket(conn, ticket_id, 'reply %d bounced: %s' % (interaction_id, report))
            flagged.append(ticket_id)
    return flagged


def find_question(conn: psycopg.Connection, ticket_id: int, interaction_id: int | None) -> Question | None:
    """The interaction named (None when it is not on the ticket), else the ticket's latest customer message, else
    its latest inbound one (None when it has none)."""
    row = conn.execute(
        'SELECT interaction_id, subject, subject_bare, type, status, coalesce(sent_date, created_at), from_name, '
        '       from_email, body_html, body_plain, message_id, refs, to_addresses '
        'FROM interaction WHERE ticket_id = %(ticket)s '
        "  AND (interaction_id = %(named)s OR (%(named)s::bigint IS NULL AND direction = 'inbound')) "
        'ORDER BY (type = %(customer)s) DESC, interaction_id DESC LIMIT 1',
        {'ticket': ticket_id, 'named': interaction_id, 'customer': CUSTOMER_EMAIL}).fetchone()
    if row is None:
        return None
    values = list(row)
    values[-2] = tuple(values[-2] or ())
    values[-1] = tuple(values[-1] or ())
    return Question(*values)


def audit_entries(conn: psycopg.Connection, ticket_id: int, interaction_id: int | None,
                  target: str | None) -> tuple[AuditEntry, ...]:
    """The changes an interaction made to the ticket ('ticket'), to itself ('interaction') or both (None), in
    order, with the id of the agent who made each (when an agent of the API did)."""
    rows = conn.execute(
        'SELECT s.at, s.action, s.modifier, s.status_before, s.status_after, s.modifier_id FROM status_audit s '
        'WHERE s.ticket_id = %s AND s.interaction_id IS NOT DISTINCT FROM %s '
        '  AND (%s::text IS NULL OR s.target = %s::text) ORDER BY s.audit_id',
        (ticket_id, interaction_id, target, target)).fetchall()
    return tuple(AuditEntry(*row) for row in rows)


def attachment_infos(conn: psycopg.Connection, interaction_id: int) -> tuple[AttachmentInfo, ...]:
    rows = conn.execute('SELECT filename, content_type, size, content_id FROM attachment WHERE interaction_id = %s '
                        'ORDER BY position', (interaction_id,)).fetchall()
    return tuple(AttachmentInfo(*row) for row in rows)
