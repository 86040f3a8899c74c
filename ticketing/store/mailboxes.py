"""Mailboxes (SuperOffice MailboxId, seed 003): reading, adding (with a default queue named after the mailbox,
for its new work), acknowledgement templates, and the version that tells a long-running worker its copy is
stale (bumped by a trigger on every change, see schema.sql).
"""
from __future__ import annotations

import asyncio

import psycopg

from ..model import Mailbox

_COLUMNS = ('mailbox_id, address, name, category, priority, follow_up, is_default, catch_all, ack_template, '
            'queue_id')
_SELECT = 'SELECT %s FROM mailbox ORDER BY mailbox_id' % _COLUMNS
_VERSION = "SELECT value FROM postdesk_meta WHERE key = 'mailboxes_changed'"


def load_mailboxes(conn: psycopg.Connection) -> list[Mailbox]:
    return [Mailbox(*row) for row in conn.execute(_SELECT).fetchall()]


def mailboxes_version(conn: psycopg.Connection) -> str | None:
    row = conn.execute(_VERSION).fetchone()
    return row[0] if row else None


async def load_mailboxes_async(conn: psycopg.AsyncConnection, timeout: float) -> list[Mailbox]:
    cursor = await asyncio.wait_for(conn.execute(_SELECT), timeout)
    return [Mailbox(*row) for row in await cursor.fetchall()]


def add_mailbox(conn: psycopg.Connection, address: str, name: str, category: str, priority: str,
                follow_up: str, is_default: bool, catch_all: bool = False) -> Mailbox:
    with conn.transaction():
        if is_default:
            conn.execute('UPDATE mailbox SET is_default = false WHERE is_default')
        conn.execute('INSERT INTO queue (name) VALUES (lower(%s)) ON CONFLICT (name) DO NOTHING', (address,))
        row = conn.execute(
            'INSERT INTO mailbox (address, name, category, priority, follow_up, is_default, catch_all, queue_id) '
            'VALUES (%s, %s, %s, %s, %s, %s, %s, (SELECT queue_id FROM queue WHERE name = lower(%s))) RETURNING '
            + _COLUMNS, (address, name, category, priority, follow_up, is_default, catch_all, address)).fetchone()
    return Mailbox(*row)


def set_ack_template(conn: psycopg.Connection, mailbox_id: int, template: str | None) -> None:
    """Acknowledge each new ticket of the mailbox with this template (None: no acknowledgements)."""
    conn.execute('UPDATE mailbox SET ack_template = %s WHERE mailbox_id = %s', (template, mailbox_id))
