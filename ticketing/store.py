"""The intake's SQL: what a batch of messages needs to know (mailboxes, known Message-IDs, tickets and their
participants, persons, stored blobs) and writing a planned batch.

A batch is written with COPY into rows whose ids were taken from the sequences beforehand, so a hundred messages
cost a dozen statements (SuperOffice's CreateTicketFromMailData, done in bulk). When a batch fails, the intake
retries its messages one by one with `write_rows(..., bulk=False)`, which inserts with ON CONFLICT DO NOTHING:
a message delivered twice at the same moment is then recognised as a duplicate instead of failing.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from .threads import TicketFacts

OUTBOX_CHANNEL = 'postdesk_outbox'      # NOTIFY channel that wakes delivery workers


class DuplicateMessage(Exception):
    """The interaction was stored meanwhile by another writer (a concurrent replay or intake worker)."""


@dataclass(frozen=True)
class Mailbox:
    mailbox_id: int
    address: str
    name: str
    category: str
    priority: str
    follow_up: str
    is_default: bool
    catch_all: bool = False
    ack_template: str | None = None


@dataclass(frozen=True)
class TicketSummary:
    """The TicketInfo fields of an existing ticket (SuperOffice CreateTicketFromMailData's response)."""
    ticket_id: int
    title: str
    owner_name: str
    category: str
    priority: str
    person_name: str | None
    contact_name: str | None


@dataclass
class Rows:
    """Everything a planned batch writes, table by table, in foreign-key order."""
    raw: list[tuple] = field(default_factory=list)
    tickets: list[tuple] = field(default_factory=list)
    interactions: list[tuple] = field(default_factory=list)
    blobs: dict[bytes, tuple] = field(default_factory=dict)
    attachments: list[tuple] = field(default_factory=list)
    audits: list[tuple] = field(default_factory=list)
    ticket_updates: dict[int, list] = field(default_factory=dict)
    quarantine: list[tuple] = field(default_factory=list)
    outbound: list[tuple] = field(default_factory=list)
    outbox: list[tuple] = field(default_factory=list)
    bounced: list[tuple] = field(default_factory=list)


RAW_COLUMNS = ('raw_id', 'sha256', 'data', 'size', 'source', 'envelope_from', 'envelope_to', 'peer', 'helo')
RAW_TYPES = ('int8', 'bytea', 'bytea', 'int4', 'text', 'text', 'text[]', 'text', 'text')   # binary COPY
TICKET_COLUMNS = ('ticket_id', 'mailbox_id', 'title', 'status', 'category', 'priority', 'person_id',
                  'from_address', 'connect_id', 'num_messages', 'has_attachment', 'thread_token')
INTERACTION_COLUMNS = ('interaction_id', 'ticket_id', 'mailbox_id', 'direction', 'type', 'status', 'sent_date',
                       'subject', 'subject_bare', 'from_name', 'from_email', 'to_addresses', 'cc_addresses',
                       'body_plain', 'body_html', 'message_id', 'in_reply_to', 'refs', 'thread_rule',
                       'auto_submitted', 'bounce', 'person_id', 'raw_id', 'num_attachments', 'defects')
BLOB_COLUMNS = ('sha256', 'size', 'data')
ATTACHMENT_COLUMNS = ('interaction_id', 'position', 'filename', 'content_type', 'content_id', 'inline', 'size',
                      'sha256')
AUDIT_COLUMNS = ('ticket_id', 'interaction_id', 'action', 'modifier', 'status_before', 'status_after', 'target')
OUTBOUND_COLUMNS = ('interaction_id', 'ticket_id', 'mailbox_id', 'direction', 'type', 'status', 'subject',
                    'subject_bare', 'from_name', 'from_email', 'to_addresses', 'cc_addresses', 'body_plain', 'body_html',
                    'message_id', 'in_reply_to', 'refs', 'thread_rule', 'auto_submitted', 'num_attachments', 'note',
                    'user_data')
OUTBOX_COLUMNS = ('interaction_id', 'ticket_id', 'mailbox_id', 'mail_from', 'rcpt_to', 'data', 'kind', 'message_id')


# ----------------------------------------------------------------------------------------------- mailboxes

def load_mailboxes(conn: psycopg.Connection) -> list[Mailbox]:
    rows = conn.execute('SELECT mailbox_id, address, name, category, priority, follow_up, is_default, catch_all, '
                        'ack_template FROM mailbox ORDER BY mailbox_id').fetchall()
    return [Mailbox(*row) for row in rows]


def add_mailbox(conn: psycopg.Connection, address: str, name: str, category: str, priority: str,
                follow_up: str, is_default: bool, catch_all: bool = False) -> Mailbox:
    with conn.transaction():
        if is_default:
            conn.execute('UPDATE mailbox SET is_default = false WHERE is_default')
        row = conn.execute(
            'INSERT INTO mailbox (address, name, category, priority, follow_up, is_default, catch_all) '
            'VALUES (%s, %s, %s, %s, %s, %s, %s) '
            'RETURNING mailbox_id, address, name, category, priority, follow_up, is_default, catch_all, ack_template',
            (address, name, category, priority, follow_up, is_default, catch_all)).fetchone()
    return Mailbox(*row)


def set_ack_template(conn: psycopg.Connection, mailbox_id: int, template: str | None) -> None:
    """Acknowledge each new ticket of the mailbox with this template (None: no acknowledgements)."""
    conn.execute('UPDATE mailbox SET ack_template = %s WHERE mailbox_id = %s', (template, mailbox_id))


# ---------------------------------------------------------------------------------------- batch knowledge

def known_messages(conn: psycopg.Connection, mailbox_id: int, message_ids: list[str]) -> dict[str, tuple[int, int]]:
    """message_id -> (ticket_id, interaction_id) for the ids already stored in the mailbox."""
    if not message_ids:
        return {}
    rows = conn.execute('SELECT message_id, ticket_id, interaction_id FROM interaction '
                        'WHERE mailbox_id = %s AND message_id = ANY(%s)', (mailbox_id, message_ids)).fetchall()
    return {mid: (ticket_id, interaction_id) for mid, ticket_id, interaction_id in rows}


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
    """Everyone who may continue a ticket by subject reference alone: its customer, every address that wrote
    to it or was written to on it, and postdesk's agents (lower-cased)."""
    if not ticket_ids:
        return {}
    rows = conn.execute(
        'SELECT t.ticket_id, lower(p.email) FROM ticket t JOIN person p USING (person_id) '
        'WHERE t.ticket_id = ANY(%(ids)s) '
        'UNION SELECT ticket_id, lower(from_email) FROM interaction '
        "      WHERE ticket_id = ANY(%(ids)s) AND from_email <> '' "
        "UNION SELECT i.ticket_id, lower(addr->>'email') "
        '      FROM interaction i, jsonb_array_elements(i.to_addresses || i.cc_addresses) AS addr '
        '      WHERE i.ticket_id = ANY(%(ids)s) '
        'UNION SELECT t.ticket_id, lower(a.email) FROM agent a CROSS JOIN unnest(%(ids)s::bigint[]) AS t(ticket_id) '
        '      WHERE a.email IS NOT NULL', {'ids': ticket_ids}).fetchall()
    found: dict[int, set[str]] = {}
    for tid, address in rows:
        if address:
            found.setdefault(tid, set()).add(address)
    return found


def upsert_persons(conn: psycopg.Connection, people: dict[str, str]) -> dict[str, int]:
    """lower(email) -> person_id, creating the persons that do not exist yet (people: lower email -> name)."""
    if not people:
        return {}
    emails = sorted(people)          # one lock order for every writer: concurrent batches do not deadlock
    conn.execute('INSERT INTO person (email, full_name) SELECT e, n FROM unnest(%s::text[], %s::text[]) AS u(e, n) '
                 'ON CONFLICT (lower(email)) DO NOTHING', (emails, [people[e] for e in emails]))
    rows = conn.execute('SELECT lower(email), person_id FROM person WHERE lower(email) = ANY(%s)', (emails,))
    return dict(rows.fetchall())


def existing_blobs(conn: psycopg.Connection, digests: list[bytes]) -> set[bytes]:
    if not digests:
        return set()
    rows = conn.execute('SELECT sha256 FROM blob WHERE sha256 = ANY(%s)', (digests,)).fetchall()
    return {bytes(r[0]) for r in rows}


def allocate_ids(conn: psycopg.Connection, table: str, column: str, count: int) -> list[int]:
    """Take `count` ids from a serial column's sequence, so rows can be written by COPY with their ids known."""
    if count == 0:
        return []
    rows = conn.execute('SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)',
                        (table, column, count)).fetchall()
    return [r[0] for r in rows]


# -------------------------------------------------------------------------------------------------- writing

def write_rows(conn: psycopg.Connection, rows: Rows, bulk: bool) -> None:
    """Write a planned batch in foreign-key order. bulk=True uses COPY; bulk=False inserts row by row and
    raises DuplicateMessage when an interaction's Message-ID was stored meanwhile."""
    write = _copy_rows if bulk else _insert_rows
    if bulk:
        _copy_rows(conn, 'raw_message', RAW_COLUMNS, rows.raw, RAW_TYPES)
    else:
        _insert_rows(conn, 'raw_message', RAW_COLUMNS, rows.raw)
    write(conn, 'ticket', TICKET_COLUMNS, rows.tickets)
    if bulk:
        _copy_rows(conn, 'interaction', INTERACTION_COLUMNS, rows.interactions)
    else:
        _insert_interactions(conn, rows.interactions)
    write(conn, 'interaction', OUTBOUND_COLUMNS, rows.outbound)
    _insert_blobs(conn, list(rows.blobs.values()))
    write(conn, 'attachment', ATTACHMENT_COLUMNS, rows.attachments)
    write(conn, 'status_audit', AUDIT_COLUMNS, rows.audits)
    _update_tickets(conn, rows.ticket_updates)
    insert_quarantine(conn, rows.quarantine)
    write(conn, 'outbox', OUTBOX_COLUMNS, rows.outbox)
    if rows.outbox:
        notify_outbox(conn, 'intake')
    mark_bounced_replies(conn, rows.bounced)


def _copy_rows(conn: psycopg.Connection, table: str, columns: tuple, rows: list[tuple],
               binary_types: tuple[str, ...] | None = None) -> None:
    """COPY rows in; with binary_types, in PostgreSQL's binary format (bytes cross as they are, not as hex)."""
    if not rows:
        return
    statement = sql.SQL('COPY {} ({}) FROM STDIN{}').format(
        sql.Identifier(table), sql.SQL(', ').join(map(sql.Identifier, columns)),
        sql.SQL(' (FORMAT BINARY)' if binary_types else ''))
    with conn.cursor() as cur:
        with cur.copy(statement) as copy:
            if binary_types:
                copy.set_types(list(binary_types))
            for row in rows:
                copy.write_row(row)


def _insert_statement(table: str, columns: tuple, suffix: str = '') -> sql.Composed:
    return sql.SQL('INSERT INTO {} ({}) VALUES ({}){}').format(
        sql.Identifier(table), sql.SQL(', ').join(map(sql.Identifier, columns)),
        sql.SQL(', ').join(sql.Placeholder() * len(columns)), sql.SQL(suffix))


def _insert_rows(conn: psycopg.Connection, table: str, columns: tuple, rows: list[tuple]) -> None:
    if not rows:
        return
    with conn.cursor() as cur:
        cur.executemany(_insert_statement(table, columns), rows)


def _insert_interactions(conn: psycopg.Connection, rows: list[tuple]) -> None:
    statement = _insert_statement('interaction', INTERACTION_COLUMNS,
                                  ' ON CONFLICT (mailbox_id, message_id) DO NOTHING RETURNING interaction_id')
    for row in rows:
        if conn.execute(statement, row).fetchone() is None:
            raise DuplicateMessage(row[INTERACTION_COLUMNS.index('message_id')])


def _insert_blobs(conn: psycopg.Connection, rows: list[tuple]) -> None:
    if not rows:
        return
    rows = sorted(rows)               # one lock order for every writer
    with conn.cursor() as cur:        # %b: attachment bytes in binary, not hex
        cur.executemany('INSERT INTO blob (sha256, size, data) VALUES (%b, %b, %b) ON CONFLICT DO NOTHING', rows)


def _update_tickets(conn: psycopg.Connection, updates: dict[int, list]) -> None:
    """Follow-ups on tickets that existed before the batch: counters, attachment flag, reopening."""
    if not updates:
        return
    params = [(u[0], u[1], u[2], u[3] is not None, tid) for tid, u in sorted(updates.items())]
    answered = [(tid, u[3]) for tid, u in sorted(updates.items()) if u[3] is not None and not u[2]]
    with conn.cursor() as cur:
        if answered:
            cur.execute(
                'INSERT INTO status_audit (ticket_id, interaction_id, action, modifier, status_before, status_after) '
                "SELECT t.ticket_id, a.interaction_id, 'Customer answered', 'postdesk', t.status, 'Open' "
                'FROM ticket t JOIN unnest(%s::bigint[], %s::bigint[]) AS a (ticket_id, interaction_id) '
                "  USING (ticket_id) WHERE t.status = 'Waiting for customer'",
                ([a[0] for a in answered], [a[1] for a in answered]))
        cur.executemany(
            'UPDATE ticket SET num_messages = num_messages + %s, has_attachment = has_attachment OR %s, '
            "last_changed = now(), base_status = CASE WHEN %s THEN 'active' ELSE base_status END, "
            "status = CASE WHEN %s OR (%s AND status = 'Waiting for customer') THEN 'Open' ELSE status END, "
            'closed_at = CASE WHEN %s THEN NULL ELSE closed_at END WHERE ticket_id = %s',
            [(n, att, reopen, reopen, customer, reopen, tid) for n, att, reopen, customer, tid in params])


# ----------------------------------------------------------------------------------- outbound and statuses

def outbound_interaction_row(mailbox_id: int, kind: str, rule: str, draft, composed, auto_submitted: str | None = None,
                             note: str | None = None, user_data: dict | None = None) -> tuple:
    """A composed outbound message (an agent's reply, an acknowledgement) as a row of OUTBOUND_COLUMNS, Unsent."""
    return (draft.interaction_id, draft.ticket_id, mailbox_id, 'outbound', kind, 'Unsent', composed.subject,
            composed.subject_bare, draft.sender.name, draft.sender.email, jsonb(addresses_json(draft.to)),
            jsonb(addresses_json(draft.cc)), composed.final_plain, composed.final_html, composed.message_id,
            [composed.in_reply_to] if composed.in_reply_to else [], list(composed.references), rule, auto_submitted,
            len(draft.attachments), note or None, jsonb(user_data or {}))


def outbox_row(mailbox_id: int, kind: str, draft, composed) -> tuple:
    """The outbox row (OUTBOX_COLUMNS) holding a composed message's exact bytes."""
    return (draft.interaction_id, draft.ticket_id, mailbox_id, composed.mail_from, list(composed.recipients),
            composed.data, kind, composed.message_id)


def addresses_json(people) -> list[dict]:
    return [{'name': p.name, 'email': p.email} for p in people]


def insert_outbound(conn: psycopg.Connection, interaction: tuple, attachments, outbox: tuple) -> None:
    """One outbound message: its interaction, its attachments (bytes stored once by sha256), its outbox row; the
    delivery workers are woken."""
    _insert_rows(conn, 'interaction', OUTBOUND_COLUMNS, [interaction])
    interaction_id = interaction[0]
    blobs, rows = [], []
    for position, attachment in enumerate(attachments):
        digest = hashlib.sha256(attachment.data).digest()
        blobs.append((digest, len(attachment.data), attachment.data))
        rows.append((interaction_id, position, attachment.filename, attachment.content_type, attachment.content_id,
                     attachment.content_id is not None, len(attachment.data), digest))
    _insert_blobs(conn, blobs)
    _insert_rows(conn, 'attachment', ATTACHMENT_COLUMNS, rows)
    _insert_rows(conn, 'outbox', OUTBOX_COLUMNS, [outbox])
    notify_outbox(conn, str(interaction_id))


def notify_outbox(conn: psycopg.Connection, payload: str) -> None:
    conn.execute('SELECT pg_notify(%s, %s)', (OUTBOX_CHANNEL, payload))


def add_audit(conn: psycopg.Connection, ticket_id: int, interaction_id: int | None, action: str, modifier: str,
              before: str | None, after: str | None, target: str = 'ticket') -> None:
    """One status change: of the ticket (target 'ticket') or of the interaction itself ('interaction')."""
    conn.execute('INSERT INTO status_audit (ticket_id, interaction_id, action, modifier, status_before, '
                 'status_after, target) VALUES (%s, %s, %s, %s, %s, %s, %s)',
                 (ticket_id, interaction_id, action, modifier, before, after, target))


def change_interaction_status(conn: psycopg.Connection, ticket_id: int, interaction_id: int, status: str,
                              action: str, modifier: str = 'postdesk') -> bool:
    """Set an interaction's status, audited (a Sent one gets its sent date). False when it had that status."""
    before = conn.execute('SELECT status FROM interaction WHERE interaction_id = %s FOR UPDATE',
                          (interaction_id,)).fetchone()
    if before is None or before[0] == status:
        return False
    conn.execute('UPDATE interaction SET status = %s, sent_date = CASE WHEN %s = %s THEN now() ELSE sent_date END '
                 'WHERE interaction_id = %s', (status, status, 'Sent', interaction_id))
    add_audit(conn, ticket_id, interaction_id, action, modifier, before[0], status, target='interaction')
    return True


def flag_ticket(conn: psycopg.Connection, ticket_id: int | None, reason: str) -> None:
    """Mark a ticket for an agent's attention (a reply that could not be delivered)."""
    if ticket_id is not None:
        conn.execute('UPDATE ticket SET flagged = %s, last_changed = now() WHERE ticket_id = %s', (reason, ticket_id))


def recent_acks(conn: psycopg.Connection, recipients: list[str]) -> dict[str, int]:
    """lower(address) -> acknowledgements queued to it in the last hour (the per-recipient limit)."""
    if not recipients:
        return {}
    rows = conn.execute(
        'SELECT lower(r), count(*) FROM outbox, unnest(rcpt_to) AS r '
        "WHERE kind = 'ack' AND created_at > now() - interval '1 hour' AND lower(r) = ANY(%s) GROUP BY 1",
        (recipients,)).fetchall()
    return dict(rows)


def mark_bounced_replies(conn: psycopg.Connection, bounced: list[tuple]) -> None:
    """A delivery report about one of our own messages marks that outbound interaction Failed, audited, and
    flags its ticket so that an agent sees it. bounced: (mailbox_id, original Message-ID, report text)."""
    for mailbox_id, message_id, report in bounced:
        found = conn.execute("SELECT interaction_id, ticket_id FROM interaction WHERE mailbox_id = %s "
                             "AND message_id = %s AND direction = 'outbound'", (mailbox_id, message_id)).fetchone()
        if found is None:
            continue
        interaction_id, ticket_id = found
        if change_interaction_status(conn, ticket_id, interaction_id, 'Failed', 'Bounced: %s' % report):
            flag_ticket(conn, ticket_id, 'reply %d bounced: %s' % (interaction_id, report))


def insert_quarantine(conn: psycopg.Connection, rows: list[tuple]) -> None:
    """Keep messages that cannot be stored as tickets; the same bytes held twice are held once."""
    if not rows:
        return
    with conn.cursor() as cur:
        cur.executemany('INSERT INTO quarantine (reason, source, mailbox_hint, sha256, data, raw_id) '
                        'VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING', rows)


def jsonb(value) -> Jsonb:
    return Jsonb(value)
