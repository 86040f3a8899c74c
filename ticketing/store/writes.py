"""Writing typed rows (see rows.py): COPY in text or binary format, INSERT statements built from a row type's
fields, and attachment bytes stored once by sha256.
"""
from __future__ import annotations

import functools

import psycopg
from psycopg import sql

from .rows import InteractionRow, columns

NOW = object()          # a column value that means: the transaction's time (now())


class DuplicateMessage(Exception):
    """The interaction was stored meanwhile by another writer (a concurrent replay or intake worker)."""


def copy_rows(conn: psycopg.Connection, table: str, row_type: type, rows: list[tuple],
              binary_types: tuple[str, ...] | None = None) -> None:
    """COPY rows in; with binary_types, in PostgreSQL's binary format (bytes cross as they are, not as hex)."""
    if not rows:
        return
    with conn.cursor() as cur:
        with cur.copy(copy_statement(table, row_type, bool(binary_types))) as copy:
            if binary_types:
                copy.set_types(list(binary_types))
            for row in rows:
                copy.write_row(row)


@functools.cache
def copy_statement(table: str, row_type: type, binary: bool) -> str:
    """The COPY statement of a row type, composed once: composing it again for each batch cost more than its
    execution in a small one."""
    return sql.SQL('COPY {} ({}) FROM STDIN{}').format(
        sql.Identifier(table), sql.SQL(', ').join(map(sql.Identifier, columns(row_type))),
        sql.SQL(' (FORMAT BINARY)' if binary else '')).as_string(None)


@functools.cache
def insert_statement(table: str, row_type: type, suffix: str = '') -> str:
    names = columns(row_type)
    return sql.SQL('INSERT INTO {} ({}) VALUES ({}){}').format(
        sql.Identifier(table), sql.SQL(', ').join(map(sql.Identifier, names)),
        sql.SQL(', ').join(sql.Placeholder() * len(names)), sql.SQL(suffix)).as_string(None)


def insert_rows(conn: psycopg.Connection, table: str, row_type: type, rows: list[tuple]) -> None:
    if not rows:
        return
    with conn.cursor() as cur:
        cur.executemany(insert_statement(table, row_type), rows)


def insert_interactions(conn: psycopg.Connection, rows: list[InteractionRow]) -> None:
    statement = insert_statement('interaction', InteractionRow,
                                 ' ON CONFLICT (mailbox_id, message_id) DO NOTHING RETURNING interaction_id')
    for row in rows:
        if conn.execute(statement, row).fetchone() is None:
            raise DuplicateMessage(row.message_id)


def insert_blobs(conn: psycopg.Connection, rows: list[tuple]) -> None:
    if not rows:
        return
    rows = sorted(rows)               # one lock order for every writer
    with conn.cursor() as cur:        # %b: attachment bytes in binary, not hex
        cur.executemany('INSERT INTO blob (sha256, size, data) VALUES (%b, %b, %b) ON CONFLICT DO NOTHING', rows)
