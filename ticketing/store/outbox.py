"""The outbox table: outgoing messages with their exact MIME bytes, claimed row by row by delivery workers with
FOR UPDATE SKIP LOCKED, and what a delivery attempt records (sent, retried later, failed for good), with the
interaction's status change and the ticket's flag. Also the operator's views (list, retry) and the count of
acknowledgements a recipient had in the last hour, read under a per-recipient lock so that several intake workers
hold the hourly limit exactly.
"""
from __future__ import annotations

import psycopg
from psycopg import sql

from ..model import DueMessage, OutboxEntry
from ..statuses import (INTERACTION_TARGET, OUTBOX_FAILED, OUTBOX_QUEUED, OUTBOX_SENT, OUTBOX_STATES, SYSTEM_MODIFIER)
from . import events
from .interactions import add_audit, change_interaction_status
from .tickets import flag_ticket

ACK_KIND, REPLY_KIND = 'ack', 'reply'
ACK_LOCK = 831_722   # pg_advisory_xact_lock(ACK_LOCK, hashtext(recipient)): one lock per recipient (int4 keys)

# States as literals (from statuses), so that the partial indexes on queued rows and on acknowledgements serve.
_CLAIM_DUE = sql.SQL(
    'SELECT outbox_id, interaction_id, ticket_id, mailbox_id, mail_from, rcpt_to, data, attempts, '
    '       extract(epoch FROM now() - queued_at), kind, message_id '
    'FROM outbox WHERE state = {queued} AND next_attempt_at <= now() '
    'ORDER BY next_attempt_at, outbox_id LIMIT 1 FOR UPDATE SKIP LOCKED').format(queued=sql.Literal(OUTBOX_QUEUED))
_LOCK_ACK_RECIPIENTS = ('SELECT count(pg_advisory_xact_lock(%s::int4, h)) FROM '
                        '(SELECT DISTINCT hashtext(lower(r)) AS h FROM unnest(%s::text[]) AS r ORDER BY 1) AS k')
_RECENT_ACKS = sql.SQL(
    'SELECT lower(r), count(*) FROM outbox, unnest(rcpt_to) AS r '
    "WHERE kind = {ack} AND created_at > now() - interval '1 hour' AND lower(r) = ANY(%s) GROUP BY 1"
).format(ack=sql.Literal(ACK_KIND))


def claim_due(conn: psycopg.Connection) -> DueMessage | None:
    """Lock the oldest due queued row that no other worker holds. Call inside a transaction."""
    row = conn.execute(_CLAIM_DUE).fetchone()
    if row is None:
        return None
    values = list(row)
    values[5], values[6], values[8] = tuple(values[5]), bytes(values[6]), float(values[8])
    return DueMessage(*values)


def count_due(conn: psycopg.Connection) -> int:
    """Queued rows due now (what `deliver --once` will attempt)."""
    return conn.execute(sql.SQL('SELECT count(*) FROM outbox WHERE state = {queued} AND next_attempt_at <= now()')
                        .format(queued=sql.Literal(OUTBOX_QUEUED))).fetchone()[0]


def mark_sent(conn: psycopg.Connection, row: DueMessage, relay_reply: str) -> None:
    conn.execute('UPDATE outbox SET state = %s, sent_at = now(), attempts = attempts + 1, relay_reply = %s, '
                 'last_error = NULL WHERE outbox_id = %s', (OUTBOX_SENT, relay_reply, row.outbox_id))
    if row.interaction_id is not None:
        change_interaction_status(conn, row.ticket_id, row.interaction_id, 'deliver', relay_reply)


def mark_sent_briefly(conn: psycopg.Connection, row: DueMessage, note: str) -> None:
    """Only the row: sent (when recording the rest of the outcome failed)."""
    conn.execute('UPDATE outbox SET state = %s, sent_at = now(), attempts = attempts + 1, relay_reply = %s '
                 'WHERE outbox_id = %s', (OUTBOX_SENT, note, row.outbox_id))


def mark_failed(conn: psycopg.Connection, row: DueMessage, reason: str) -> None:
    """The row failed for good. Its interaction becomes Failed unless another row (the same reply to the other
    recipients) was sent: then the failure is audited and flagged, and the reply stays Sent."""
    conn.execute('UPDATE outbox SET state = %s, attempts = attempts + 1, last_error = %s WHERE outbox_id = %s',
                 (OUTBOX_FAILED, reason, row.outbox_id))
    if partly_sent(conn, row):
        add_audit(conn, row.ticket_id, row.interaction_id, 'Delivery failed for %s: %s' % (
            ', '.join(row.rcpt_to), reason), SYSTEM_MODIFIER, None, None, target=INTERACTION_TARGET)
    elif row.interaction_id is not None:
        change_interaction_status(conn, row.ticket_id, row.interaction_id, 'fail', reason)
    flag_ticket(conn, row.ticket_id, 'reply %s could not be delivered: %s' % (row.interaction_id, reason))


def partly_sent(conn: psycopg.Connection, row: DueMessage) -> bool:
    if row.interaction_id is None:
        return False
    return conn.execute('SELECT EXISTS (SELECT 1 FROM outbox WHERE interaction_id = %s AND state = %s)',
                        (row.interaction_id, OUTBOX_SENT)).fetchone()[0]


def schedule_retry(conn: psycopg.Connection, row: DueMessage, reason: str, seconds: float) -> None:
    conn.execute('UPDATE outbox SET attempts = attempts + 1, last_error = %s, '
                 'next_attempt_at = now() + make_interval(secs => %s) WHERE outbox_id = %s',
                 (reason, seconds, row.outbox_id))


def queue_copy(conn: psycopg.Connection, row: DueMessage, deferred: dict[str, str], delay: float) -> None:
    """The same bytes again, for the recipients the relay refused only for now, with their refusals."""
    reason = '; '.join('%s: %s' % item for item in deferred.items())
    conn.execute('INSERT INTO outbox (interaction_id, ticket_id, mailbox_id, mail_from, rcpt_to, data, kind, '
                 'message_id, attempts, last_error, next_attempt_at) '
                 'SELECT interaction_id, ticket_id, mailbox_id, mail_from, %s, data, kind, message_id, 1, %s, '
                 '       now() + make_interval(secs => %s) FROM outbox WHERE outbox_id = %s',
                 (list(deferred), reason, delay, row.outbox_id))


def note_refused(conn: psycopg.Connection, row: DueMessage, refused: dict[str, str]) -> None:
    text = '; '.join('%s: %s' % item for item in refused.items())
    if not text:
        return
    flag_ticket(conn, row.ticket_id, 'reply %s was refused for %s' % (row.interaction_id, text))
    if row.ticket_id is not None:
        add_audit(conn, row.ticket_id, row.interaction_id, 'Recipients refused: %s' % text, SYSTEM_MODIFIER,
                  None, None, target=INTERACTION_TARGET)


def list_outbox(conn: psycopg.Connection, states: tuple[str, ...] = OUTBOX_STATES,
                outbox_id: int | None = None) -> list[OutboxEntry]:
    rows = conn.execute(
        "SELECT o.outbox_id, o.state, o.kind, o.ticket_id, o.interaction_id, o.rcpt_to, coalesce(i.subject, ''), "
        '       o.attempts, o.created_at, o.next_attempt_at, o.sent_at, o.last_error, o.relay_reply '
        'FROM outbox o LEFT JOIN interaction i USING (interaction_id) '
        'WHERE o.state = ANY(%s) AND (%s::bigint IS NULL OR o.outbox_id = %s) ORDER BY o.outbox_id',
        (list(states), outbox_id, outbox_id)).fetchall()
    return [OutboxEntry(r[0], r[1], r[2], r[3], r[4], tuple(r[5]), *r[6:]) for r in rows]


def requeue(conn: psycopg.Connection, outbox_id: int, modifier: str) -> OutboxEntry | None:
    """Queue a failed or waiting row again, due now, with a fresh max_age. None when there is no such row; a sent
    row is left alone (sending it again would be a second copy)."""
    with conn.transaction():
        found = conn.execute('SELECT state, ticket_id, interaction_id FROM outbox WHERE outbox_id = %s FOR UPDATE',
                             (outbox_id,)).fetchone()
        if found is None:
            return None
        state, ticket_id, interaction_id = found
        if state != OUTBOX_SENT:
            conn.execute('UPDATE outbox SET state = %s, next_attempt_at = now(), queued_at = now() '
                         'WHERE outbox_id = %s', (OUTBOX_QUEUED, outbox_id))
            events.notify(conn, events.OUTBOX_CHANNEL, str(outbox_id))
            if state == OUTBOX_FAILED and interaction_id is not None:
                change_interaction_status(conn, ticket_id, interaction_id, 'retry', modifier=modifier)
    return list_outbox(conn, outbox_id=outbox_id)[0]


def recent_acks(conn: psycopg.Connection, recipients: list[str]) -> dict[str, int]:
    """lower(address) -> acknowledgements queued to it in the last hour (the per-recipient limit). Call in the
    transaction that queues the new ones: each recipient is locked (in one order for every writer) until it
    ends, so a concurrent writer counts them once they are committed."""
    if not recipients:
        return {}
    conn.execute(_LOCK_ACK_RECIPIENTS, (ACK_LOCK, recipients))
    return dict(conn.execute(_RECENT_ACKS, (recipients,)).fetchall())
