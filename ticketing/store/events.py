"""Notifications between processes: PostgreSQL NOTIFY channels that wake workers. A notification only rings the
bell; the work itself is always in a table, so a missed one costs a poll interval, never a message.
"""
from __future__ import annotations

import psycopg
from psycopg import sql

SPOOL_CHANNEL = 'postdesk_spool'        # a message was spooled: intake workers wake
OUTBOX_CHANNEL = 'postdesk_outbox'      # a message was queued: delivery workers wake


def notify(conn: psycopg.Connection, channel: str, payload: str = '') -> None:
    conn.execute('SELECT pg_notify(%s, %s)', (channel, payload))


def listen(conn: psycopg.Connection, channel: str) -> None:
    conn.execute(sql.SQL('LISTEN {}').format(sql.Identifier(channel)))
