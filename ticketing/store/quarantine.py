"""The quarantine table: messages kept whole, with the reason they could not become tickets, until an operator
retries them. Nothing in it is ever deleted by postdesk; the same bytes held twice are held once.
"""
from __future__ import annotations

import psycopg

from ..model import HeldMessage
from ..statuses import HELD, RELEASED
from .rows import QuarantineRow

HEADER_PREVIEW_BYTES = 16384


def insert_quarantine(conn: psycopg.Connection, rows: list[QuarantineRow]) -> None:
    if not rows:
        return
    with conn.cursor() as cur:
        cur.executemany('INSERT INTO quarantine (reason, source, mailbox_hint, sha256, data, raw_id) '
                        'VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING', rows)


def list_held(conn: psycopg.Connection, include_released: bool = False) -> list[HeldMessage]:
    rows = conn.execute(
        'SELECT quarantine_id, created_at, reason, source, mailbox_hint, length(data), state FROM quarantine '
        'WHERE %s OR state = %s ORDER BY quarantine_id', (include_released, HELD)).fetchall()
    return [HeldMessage(*row) for row in rows]


def held_with_head(conn: psycopg.Connection, quarantine_id: int) -> tuple[HeldMessage, bytes] | None:
    """The entry and the first bytes of the kept message (where its header block is)."""
    row = conn.execute(
        'SELECT quarantine_id, created_at, reason, source, mailbox_hint, length(data), state, '
        '       substring(data from 1 for %s) FROM quarantine WHERE quarantine_id = %s',
        (HEADER_PREVIEW_BYTES, quarantine_id)).fetchone()
    if row is None:
        return None
    return HeldMessage(*row[:7]), bytes(row[7])


def held_ids(conn: psycopg.Connection, ids: list[int] | None) -> list[int]:
    """The held entries among `ids` (all held entries when None), in order."""
    rows = conn.execute('SELECT quarantine_id FROM quarantine WHERE state = %s '
                        'AND (%s::bigint[] IS NULL OR quarantine_id = ANY(%s)) ORDER BY quarantine_id',
                        (HELD, ids or None, ids or None)).fetchall()
    return [r[0] for r in rows]


def held_message(conn: psycopg.Connection, quarantine_id: int) -> tuple[bytes, str, str | None]:
    """The kept bytes, their source and the mailbox hint."""
    data, source, hint = conn.execute('SELECT data, source, mailbox_hint FROM quarantine WHERE quarantine_id = %s',
                                      (quarantine_id,)).fetchone()
    return bytes(data), source, hint


def update_reason(conn: psycopg.Connection, quarantine_id: int, reason: str) -> None:
    conn.execute('UPDATE quarantine SET reason = %s WHERE quarantine_id = %s', (reason, quarantine_id))


def release(conn: psycopg.Connection, quarantine_id: int, interaction_id: int | None) -> None:
    conn.execute('UPDATE quarantine SET state = %s, released_at = now(), interaction_id = %s '
                 'WHERE quarantine_id = %s', (RELEASED, interaction_id, quarantine_id))


def held_id(conn: psycopg.Connection, sha256: bytes) -> int | None:
    """The held entry of these bytes (the same bytes are held once)."""
    row = conn.execute('SELECT quarantine_id FROM quarantine WHERE sha256 = %s AND state = %s',
                       (sha256, HELD)).fetchone()
    return row[0] if row else None
