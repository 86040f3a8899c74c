"""An agent's edits of a ticket (SuperOffice's SaveTicketEntity, seed 002): locking it, writing the changed fields,
creating a ticket that no message opened, and keeping iService's thread properties (seed 000) in its custom
fields.
"""
from __future__ import annotations

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from ..model import CaseContext, Tag, TicketRecord
from .batches import upsert_persons
from .tickets import _TICKET, _record, ticket_messages
from .writes import NOW

# The TicketEntity fields an agent may change, as their columns (written by name, never from the request).
EDITABLE_COLUMNS = frozenset({'title', 'base_status', 'status', 'category', 'priority', 'owned_by', 'tags',
                              'deadline', 'connect_id', 'custom_fields', 'closed_at'})
THREAD_PROPERTIES = 'threadProperties'


def lock_ticket(conn: psycopg.Connection, ticket_id: int) -> TicketRecord | None:
    """The ticket, locked until the transaction ends (without its messages)."""
    row = conn.execute(_TICKET + 'WHERE t.ticket_id = %s FOR UPDATE OF t', (ticket_id,)).fetchone()
    return _record(row) if row is not None else None


def read_ticket(conn: psycopg.Connection, ticket_id: int) -> TicketRecord:
    """The ticket as it is now, with its messages (after a save, in the same transaction)."""
    row = conn.execute(_TICKET + 'WHERE t.ticket_id = %s', (ticket_id,)).fetchone()
    return _record(row, ticket_messages(conn, ticket_id))


def update_ticket(conn: psycopg.Connection, ticket_id: int, values: dict) -> None:
    """Write the changed columns (NOW: the transaction's time, as last_changed's); last_changed moves on (it is
    the ticket's ETag)."""
    unknown = set(values) - EDITABLE_COLUMNS
    if unknown:
        raise ValueError('not editable: %s' % ', '.join(sorted(unknown)))
    assignments = [sql.SQL('{} = {}').format(sql.Identifier(column), sql.SQL('now()') if value is NOW
                                             else sql.Placeholder()) for column, value in values.items()]
    statement = sql.SQL('UPDATE ticket SET {}, last_changed = now() WHERE ticket_id = {}').format(
        sql.SQL(', ').join(assignments), sql.Placeholder())
    conn.execute(statement, [_value(v) for v in values.values() if v is not NOW] + [ticket_id])


def keep_tags(conn: psycopg.Connection, tags: list[Tag]) -> None:
    """Give each new tag name its id (a row of the tag table), with the ToolTip it came with; a name kept
    already is left as it is (its ToolTip is every ticket's). Names are distinct; they are written in their
    order, so that two saves at once wait for each other's new names in the same order, never in a circle."""
    if not tags:
        return
    ordered = sorted(tags, key=lambda tag: tag.name)
    conn.execute('INSERT INTO tag (name, tooltip) SELECT * FROM unnest(%s::text[], %s::text[]) '
                 'ON CONFLICT (name) DO NOTHING', ([tag.name for tag in ordered], [tag.tooltip for tag in ordered]))


def tag_names(conn: psycopg.Connection, tag_ids: list[int], scope: list[int] | None) -> dict[int, str]:
    """The names of the tags with those ids that a ticket of the scope's mailboxes carries (any for None): a tag
    seen only in other mailboxes is not named to an agent who may not see them."""
    if not tag_ids:
        return {}
    return dict(conn.execute(
        'SELECT g.tag_id, g.name FROM tag g WHERE g.tag_id = ANY(%s) AND EXISTS (SELECT 1 FROM ticket t '
        'WHERE g.name = ANY(t.tags) AND (%s::int[] IS NULL OR t.mailbox_id = ANY(%s)))',
        (tag_ids, scope, scope)).fetchall())


def _value(value):
    return Jsonb(value) if isinstance(value, dict) else value


def insert_ticket(conn: psycopg.Connection, mailbox_id: int, title: str, status: str, base_status: str,
                  person_id: int | None, from_address: str | None) -> int:
    return conn.execute('INSERT INTO ticket (mailbox_id, title, status, base_status, person_id, from_address) '
                        'VALUES (%s, %s, %s, %s, %s, %s) RETURNING ticket_id',
                        (mailbox_id, title, status, base_status, person_id, from_address)).fetchone()[0]


def person_for(conn: psycopg.Connection, email: str, name: str) -> int:
    """The person with this address (created when new)."""
    return upsert_persons(conn, {email.lower(): name})[email.lower()]


def ticket_exists(conn: psycopg.Connection, ticket_id: int, scope: list[int] | None = None) -> bool:
    """Whether the ticket exists in one of the scope's mailboxes (any mailbox for None)."""
    return conn.execute('SELECT EXISTS (SELECT 1 FROM ticket WHERE ticket_id = %s '
                        'AND (%s::int[] IS NULL OR mailbox_id = ANY(%s)))', (ticket_id, scope, scope)).fetchone()[0]


def thread_properties_locked(conn: psycopg.Connection, ticket_id: int) -> list:
    """The thread properties kept on a ticket, locked until the transaction ends (a change is read, merged and
    written back without another writer in between)."""
    row = conn.execute('SELECT custom_fields -> %s FROM ticket WHERE ticket_id = %s FOR UPDATE',
                       (THREAD_PROPERTIES, ticket_id)).fetchone()
    return row[0] if row is not None and isinstance(row[0], list) else []


def keep_thread_properties(conn: psycopg.Connection, ticket_id: int, properties: list) -> None:
    """iService's threadProperties, kept in the ticket's custom fields (and shown back as caseProperties)."""
    conn.execute('UPDATE ticket SET custom_fields = custom_fields || jsonb_build_object(%s::text, %s::jsonb), '
                 'last_changed = now() WHERE ticket_id = %s', (THREAD_PROPERTIES, Jsonb(properties), ticket_id))


def ticket_of_interaction(conn: psycopg.Connection, interaction_id: int) -> tuple[int, int] | None:
    """The ticket and mailbox of an interaction."""
    return conn.execute('SELECT ticket_id, mailbox_id FROM interaction WHERE interaction_id = %s',
                        (interaction_id,)).fetchone()


def case_context(conn: psycopg.Connection, ticket_id: int) -> CaseContext:
    row = conn.execute('SELECT t.custom_fields -> %s, t.category, t.owned_by, a.full_name FROM ticket t '
                       'LEFT JOIN agent a ON a.agent_id = t.owned_by WHERE t.ticket_id = %s',
                       (THREAD_PROPERTIES, ticket_id)).fetchone()
    if row is None:
        return CaseContext()
    properties = row[0] if isinstance(row[0], list) else []
    return CaseContext(tuple(p for p in properties if isinstance(p, dict)), row[1], row[2], row[3])
