"""The quarantine: messages kept whole, with the reason they could not become tickets, until an operator retries
them (after a fix, or after adding the mailbox they were for). Nothing in it is ever deleted by postdesk.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass

import psycopg

from .config import Config
from .intake import QUARANTINED, Intake, Outcome
from .sources import SourceMessage
from .store import load_mailboxes

HEADER_PREVIEW_BYTES = 16384


@dataclass(frozen=True)
class Held:
    quarantine_id: int
    created_at: datetime.datetime
    reason: str
    source: str
    mailbox_hint: str | None
    size: int
    state: str


def list_held(conn: psycopg.Connection, include_released: bool = False) -> list[Held]:
    rows = conn.execute(
        'SELECT quarantine_id, created_at, reason, source, mailbox_hint, length(data), state FROM quarantine '
        "WHERE %s OR state = 'held' ORDER BY quarantine_id", (include_released,)).fetchall()
    return [Held(*row) for row in rows]


def show(conn: psycopg.Connection, quarantine_id: int) -> tuple[Held, str] | None:
    """The entry and the header block of the kept message, as text."""
    row = conn.execute(
        'SELECT quarantine_id, created_at, reason, source, mailbox_hint, length(data), state, '
        '       substring(data from 1 for %s) FROM quarantine WHERE quarantine_id = %s',
        (HEADER_PREVIEW_BYTES, quarantine_id)).fetchone()
    if row is None:
        return None
    return Held(*row[:7]), header_block(bytes(row[7]))


def header_block(data: bytes) -> str:
    head = data.replace(b'\r\n', b'\n').split(b'\n\n', 1)[0]
    return head.decode('utf-8', 'replace').replace('\x00', '')


def retry(conn: psycopg.Connection, config: Config, ids: list[int] | None) -> list[tuple[int, Outcome]]:
    """Run held messages through intake again; those that are stored now are released."""
    mailboxes = {m.address.lower(): m for m in load_mailboxes(conn)}
    results = []
    for quarantine_id in _held_ids(conn, ids):
        data, source, hint = conn.execute('SELECT data, source, mailbox_hint FROM quarantine '
                                          'WHERE quarantine_id = %s', (quarantine_id,)).fetchone()
        intake = Intake(conn, config, mailboxes.get((hint or '').lower()))
        message = SourceMessage(bytes(data), 'quarantine #%d (%s)' % (quarantine_id, source), source)
        outcome = intake.store_batch([message])[0]
        _record_retry(conn, quarantine_id, outcome)
        results.append((quarantine_id, outcome))
    return results


def _held_ids(conn: psycopg.Connection, ids: list[int] | None) -> list[int]:
    rows = conn.execute("SELECT quarantine_id FROM quarantine WHERE state = 'held' "
                        'AND (%s::bigint[] IS NULL OR quarantine_id = ANY(%s)) ORDER BY quarantine_id',
                        (ids or None, ids or None)).fetchall()
    return [r[0] for r in rows]


def _record_retry(conn: psycopg.Connection, quarantine_id: int, outcome: Outcome) -> None:
    with conn.transaction():
        if outcome.outcome == QUARANTINED:
            conn.execute('UPDATE quarantine SET reason = %s WHERE quarantine_id = %s', (outcome.reason, quarantine_id))
        else:
            conn.execute("UPDATE quarantine SET state = 'released', released_at = now(), interaction_id = %s "
                         'WHERE quarantine_id = %s', (outcome.interaction_id, quarantine_id))
