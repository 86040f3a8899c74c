"""A batch of inbound messages: what it needs to know (known Message-IDs, tickets and their participants, persons,
stored blobs, ids taken in advance) and writing the planned rows (SuperOffice's CreateTicketFromMailData, seed
003, done in bulk).

A batch is written with COPY into rows whose ids were taken from the sequences beforehand, so a hundred messages
cost a dozen statements. `write_rows(..., bulk=False)` inserts row by row with ON CONFLICT DO NOTHING instead:
a message stored meanwhile by another writer then raises DuplicateMessage rather than failing the transaction.
"""
from __future__ import annotations

import psycopg
from psycopg import sql

from ..model import TicketFacts, TicketSummary
from ..threads import WaitingReply
from ..statuses import ACTIVE_WORK_STATES, OPEN, QUEUED, SYSTEM_MODIFIER, WAITING_FOR_CUSTOMER, ticket_transition
from . import events, spool
from .interactions import mark_bounced_replies
from .quarantine import insert_quarantine
from .rows import (RAW_TYPES, AttachmentRow, AuditRow, InteractionRow, OutboundRow, OutboxRow, RawRow, Rows,
                   TicketRow, TicketUpdate)
from .tickets import merge_tickets
from .writes import copy_rows, insert_blobs, insert_interactions, insert_rows


# ---------------------------------------------------------------------------------------- batch knowledge

THREAD_LOCK = 831_723      # pg_advisory_xact_lock(THREAD_LOCK, bucket of mailbox and Message-ID)
# A batch's Message-IDs fall into THREAD_LOCK_BUCKETS locks: advisory locks take room in PostgreSQL's shared
# lock table (max_locks_per_transaction x max_connections, 6,400 by default), and a batch of 100 messages with
# long References chains names thousands. Two batches whose IDs share a bucket only wait for each other.
THREAD_LOCK_BUCKETS = 1024
_LOCK_THREADS = ('SELECT count(pg_advisory_xact_lock(%s::int4, h)) FROM '
                 "(SELECT DISTINCT hashtext(m::text || ' ' || mid) & %s AS h "
                 ' FROM unnest(%s::int[], %s::text[]) AS k (m, mid) ORDER BY 1) AS keys')

# One index probe per key, whatever the statistics say. A table filled by a long replay has none yet (autovacuum
# is late, or off), and PostgreSQL then plans `message_id = ANY(...)` as a scan of the whole mailbox and
# `lower(email) = ANY(...)` as a sequential scan (measured with EXPLAIN on 20,000 rows: 29 ms instead of 2 ms per
# batch). A LATERAL subquery with LIMIT 1 per key leaves it the choice between one probe of the unique index and
# scanning the table for each key, and it takes the probe as soon as the table is more than a few pages.
_THREAD_LOOKUPS = (
    'SELECT false, i.message_id, i.ticket_id, i.interaction_id, NULL::timestamptz FROM unnest(%s::text[]) AS q (mid) '
    'CROSS JOIN LATERAL (SELECT message_id, ticket_id, interaction_id FROM interaction '
    '                    WHERE mailbox_id = %s AND message_id = q.mid LIMIT 1) AS i '
    'UNION ALL SELECT true, w.message_id, w.ticket_id, w.interaction_id, w.sent_date '
    'FROM unnest(%s::text[]) AS q (mid) CROSS JOIN LATERAL '
    '  (SELECT * FROM thread_wait WHERE mailbox_id = %s AND message_id = q.mid) AS w')
_PERSONS = ('SELECT q.email, p.person_id FROM unnest(%s::text[]) AS q (email) '
            'CROSS JOIN LATERAL (SELECT person_id FROM person WHERE lower(email) = q.email LIMIT 1) AS p')
# Inserted and existing persons in one statement: the rows it inserts are not visible to its own scan of person,
# so each email comes once, from the INSERT or from the scan. A person another writer committed while this
# statement waited for it is in neither (the statement's snapshot is older): _PERSONS finds it then.
_UPSERT_PERSONS = (
    'WITH wanted AS (SELECT e, n FROM unnest(%s::text[], %s::text[]) AS u (e, n)), '
    '     added AS (INSERT INTO person (email, full_name) SELECT e, n FROM wanted '
    '               ON CONFLICT (lower(email)) DO NOTHING RETURNING lower(email) AS email, person_id) '
    'SELECT email, person_id FROM added '
    'UNION ALL SELECT q.e, p.person_id FROM wanted AS q '
    '  CROSS JOIN LATERAL (SELECT person_id FROM person WHERE lower(email) = q.e LIMIT 1) AS p')


def lock_threads(conn: psycopg.Connection, keys: list[tuple[int, str]]) -> None:
    """Hold until the transaction ends a lock on each (mailbox_id, Message-ID) a batch stores or names (int4 keys:
    THREAD_LOCK and the pair's bucket; taken in one order by every writer, so they cannot deadlock). A batch that
    stores or names one of them waits for the holder to commit, and its lookups, later statements, see the
    holder's rows: without it, a reply and the message it answers stored at the same moment by two writers each
    missed the other, and opened two tickets."""
    if keys:
        conn.execute(_LOCK_THREADS, (THREAD_LOCK, THREAD_LOCK_BUCKETS - 1, [m for m, _ in keys],
                                     [mid for _, mid in keys]))


def thread_lookups(conn: psycopg.Connection, mailbox_id: int, message_ids: list[str], own_ids: list[str]
                   ) -> tuple[dict[str, tuple[int, int]], dict[str, list[WaitingReply]]]:
    """In one statement, for a mailbox: message_id -> (ticket_id, interaction_id) of the `message_ids` already
    stored, and message_id -> the messages stored before that named one of `own_ids` (the batch's own) and
    opened tickets of their own."""
    if not message_ids and not own_ids:
        return {}, {}
    rows = conn.execute(_THREAD_LOOKUPS, (message_ids, mailbox_id, own_ids, mailbox_id)).fetchall()
    known: dict[str, tuple[int, int]] = {}
    waiting: dict[str, list[WaitingReply]] = {}
    for is_wait, mid, ticket_id, interaction_id, sent_date in rows:
        if is_wait:
            waiting.setdefault(mid, []).append(WaitingReply(ticket_id, interaction_id, sent_date))
        else:
            known[mid] = (ticket_id, interaction_id)
    return known, waiting


def ticket_facts(conn: psycopg.Connection, ticket_ids: list[int]) -> tuple[dict[int, TicketFacts],
                                                                          dict[int, TicketSummary]]:
    """Status, mailbox, thread token and participants (for the hijack guard) of tickets, and their TicketInfo."""
    if not ticket_ids:
        return {}, {}
    rows = conn.execute(
        'SELECT t.ticket_id, t.mailbox_id, t.base_status, t.thread_token, t.title, '
        "       coalesce(a.full_name, ''), t.category, t.priority, "
        "       nullif(coalesce(nullif(p.full_name, ''), p.email), ''), p.contact_name "
        'FROM ticket t LEFT JOIN person p USING (person_id) LEFT JOIN agent a ON a.agent_id = t.owned_by '
        'WHERE t.ticket_id = ANY(%s)', (ticket_ids,)).fetchall()
    participants = ticket_participants(conn, [r[0] for r in rows])
    facts, summaries = {}, {}
    for tid, mailbox_id, status, token, title, owner, category, priority, person, contact in rows:
        facts[tid] = TicketFacts(tid, mailbox_id, status, frozenset(participants.get(tid, ())), token)
        summaries[tid] = TicketSummary(tid, title, owner, category, priority, person, contact)
    return facts, summaries


def ticket_participants(conn: psycopg.Connection, ticket_ids: list[int]) -> dict[int, set[str]]:
    """Everyone who may continue a ticket by subject reference alone, besides the agents: its customer and every
    address that wrote to it or was written to on it (lower-cased)."""
    if not ticket_ids:
        return {}
    rows = conn.execute(
        'SELECT t.ticket_id, lower(p.email) FROM ticket t JOIN person p USING (person_id) '
        'WHERE t.ticket_id = ANY(%(ids)s) '
        'UNION SELECT ticket_id, lower(from_email) FROM interaction '
        "      WHERE ticket_id = ANY(%(ids)s) AND from_email <> '' "
        "UNION SELECT i.ticket_id, lower(addr->>'email') "
        '      FROM interaction i, jsonb_array_elements(i.to_addresses || i.cc_addresses) AS addr '
        '      WHERE i.ticket_id = ANY(%(ids)s)', {'ids': ticket_ids}).fetchall()
    found: dict[int, set[str]] = {}
    for tid, address in rows:
        if address:
            found.setdefault(tid, set()).add(address)
    return found


def work_of_tickets(conn: psycopg.Connection, ticket_ids: list[int]) -> tuple[set[int], dict[int, int]]:
    """The tickets that have active work (queued, offered, owned, in a workbin), and each ticket's queue: that of
    its latest work item."""
    if not ticket_ids:
        return set(), {}
    rows = conn.execute(sql.SQL(
        'SELECT ticket_id, bool_or(state IN ({active})), '
        '       (array_agg(queue_id ORDER BY interaction_id DESC) FILTER (WHERE queue_id IS NOT NULL))[1] '
        'FROM interaction WHERE ticket_id = ANY(%s) AND state IS NOT NULL GROUP BY ticket_id').format(
        active=sql.SQL(', ').join(map(sql.Literal, ACTIVE_WORK_STATES))), (ticket_ids,)).fetchall()
    return {tid for tid, active, _ in rows if active}, {tid: queue for tid, _, queue in rows if queue is not None}


def upsert_persons(conn: psycopg.Connection, people: dict[str, str]) -> dict[str, int]:
    """lower(email) -> person_id, creating the persons that do not exist yet (people: lower email -> name)."""
    if not people:
        return {}
    emails = sorted(people)          # one lock order for every writer: concurrent batches do not deadlock
    found = dict(conn.execute(_UPSERT_PERSONS, (emails, [people[e] for e in emails])).fetchall())
    missing = [email for email in emails if email not in found]
    if missing:                      # committed by another writer after this statement began: seen by the next
        found.update(conn.execute(_PERSONS, (missing,)).fetchall())
    return found


def existing_blobs(conn: psycopg.Connection, digests: list[bytes]) -> set[bytes]:
    if not digests:
        return set()
    rows = conn.execute('SELECT b.sha256 FROM unnest(%s::bytea[]) AS q (digest) CROSS JOIN LATERAL '
                        '  (SELECT sha256 FROM blob WHERE sha256 = q.digest LIMIT 1) AS b', (digests,)).fetchall()
    return {bytes(r[0]) for r in rows}


INTAKE_TABLES = ('interaction', 'ticket', 'person', 'raw_message', 'attachment', 'blob', 'thread_wait')


def analyze_intake_tables(conn: psycopg.Connection) -> None:
    """Statistics for the tables a long replay fills, so that every other plan fits their size (autovacuum may
    be off, and comes late anyway). Call outside a transaction."""
    conn.execute(sql.SQL('ANALYZE {}').format(sql.SQL(', ').join(map(sql.Identifier, INTAKE_TABLES))))


def allocate_ids(conn: psycopg.Connection, table: str, column: str, count: int) -> list[int]:
    """Take `count` ids from a serial column's sequence, so rows can be written by COPY with their ids known."""
    return allocate_many_ids(conn, [(table, column, count)])[0]


def allocate_many_ids(conn: psycopg.Connection, wanted: list[tuple[str, str, int]]) -> list[list[int]]:
    """The ids of several serial columns at once, in one statement: (table, column, count) -> that many ids."""
    asked = [(table, column, count) for table, column, count in wanted if count > 0]
    if not asked:
        return [[] for _ in wanted]
    rows = conn.execute(
        'SELECT array(SELECT nextval(s.seq) FROM generate_series(1, w.n)) '
        'FROM unnest(%s::text[], %s::text[], %s::int[]) WITH ORDINALITY AS w (t, c, n, k) '
        'CROSS JOIN LATERAL (SELECT pg_get_serial_sequence(w.t, w.c)::regclass AS seq) AS s ORDER BY w.k',
        ([t for t, _, _ in asked], [c for _, c, _ in asked], [n for _, _, n in asked])).fetchall()
    found = iter(ids for ids, in rows)
    return [next(found) if count > 0 else [] for _, _, count in wanted]


# -------------------------------------------------------------------------------------------------- writing

def write_rows(conn: psycopg.Connection, rows: Rows, bulk: bool) -> None:
    """Write a planned batch in foreign-key order. bulk=True uses COPY; bulk=False inserts row by row and
    raises DuplicateMessage when an interaction's Message-ID was stored meanwhile."""
    write = copy_rows if bulk else insert_rows
    if bulk:
        copy_rows(conn, 'raw_message', RawRow, rows.raw, RAW_TYPES)
    else:
        insert_rows(conn, 'raw_message', RawRow, rows.raw)
    write(conn, 'ticket', TicketRow, rows.tickets)
    if bulk:
        copy_rows(conn, 'interaction', InteractionRow, rows.interactions)
    else:
        insert_interactions(conn, rows.interactions)
    write(conn, 'interaction', OutboundRow, rows.outbound)
    insert_blobs(conn, list(rows.blobs.values()))
    write(conn, 'attachment', AttachmentRow, rows.attachments)
    write(conn, 'status_audit', AuditRow, rows.audits)
    update_tickets(conn, rows.ticket_updates)
    insert_quarantine(conn, rows.quarantine)
    write(conn, 'outbox', OutboxRow, rows.outbox)
    if rows.outbox:
        events.notify(conn, events.OUTBOX_CHANNEL, 'intake')
    if any(row.state == QUEUED for row in rows.interactions):
        events.notify(conn, events.WORK_CHANNEL, 'intake')
    mark_bounced_replies(conn, rows.bounced)
    write_waits(conn, rows)
    merge_tickets(conn, rows.merges)
    spool.mark(conn, rows.spool_states)


def write_waits(conn: psycopg.Connection, rows: Rows) -> None:
    """The Message-IDs new tickets wait for, and those that arrived (their waits are over)."""
    if rows.resolved_waits:
        conn.execute('DELETE FROM thread_wait t USING unnest(%s::int[], %s::text[]) AS r (mailbox_id, message_id) '
                     'WHERE t.mailbox_id = r.mailbox_id AND t.message_id = r.message_id',
                     ([m for m, _ in rows.resolved_waits], [mid for _, mid in rows.resolved_waits]))
    resolved = set(rows.resolved_waits)
    waits = [w for w in rows.waits if (w.mailbox_id, w.message_id) not in resolved]     # over within the batch
    if waits:
        with conn.cursor() as cur:
            cur.executemany('INSERT INTO thread_wait (mailbox_id, message_id, ticket_id, interaction_id, sent_date) '
                            'VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING', waits)


def update_tickets(conn: psycopg.Connection, updates: dict[int, TicketUpdate]) -> None:
    """Follow-ups on tickets that existed before the batch: counters, attachment flag, reopening, and a ticket
    waiting for its customer that the customer answered is Open again (audited)."""
    if not updates:
        return
    ordered = sorted(updates.items())           # one lock order for every writer
    answered = [(tid, u.answered_by) for tid, u in ordered if u.answered_by is not None and not u.reopen]
    with conn.cursor() as cur:
        if answered:
            audit_customer_answers(cur, answered)
        reopened = ticket_transition('reopen')
        cur.executemany(
            'UPDATE ticket SET num_messages = num_messages + %(messages)s, '
            '  has_attachment = has_attachment OR %(attachment)s, last_changed = now(), '
            '  base_status = CASE WHEN %(reopen)s THEN %(base)s ELSE base_status END, '
            '  status = CASE WHEN %(reopen)s OR (%(answered)s AND status = %(waiting)s) THEN %(open)s '
            '           ELSE status END, '
            '  closed_at = CASE WHEN %(reopen)s THEN NULL ELSE closed_at END WHERE ticket_id = %(ticket)s',
            [{'messages': u.messages, 'attachment': u.has_attachment, 'reopen': u.reopen, 'base': reopened.base,
              'answered': u.answered_by is not None, 'waiting': WAITING_FOR_CUSTOMER, 'open': OPEN, 'ticket': tid}
             for tid, u in ordered])


def audit_customer_answers(cur: psycopg.Cursor, answered: list[tuple[int, int]]) -> None:
    transition = ticket_transition('customer_answered')
    cur.execute(
        'INSERT INTO status_audit (ticket_id, interaction_id, action, modifier, status_before, status_after) '
        'SELECT t.ticket_id, a.interaction_id, %s, %s, t.status, %s '
        'FROM ticket t JOIN unnest(%s::bigint[], %s::bigint[]) AS a (ticket_id, interaction_id) '
        '  USING (ticket_id) WHERE t.status = %s',
        (transition.action, SYSTEM_MODIFIER, transition.after, [a[0] for a in answered], [a[1] for a in answered],
         WAITING_FOR_CUSTOMER))
