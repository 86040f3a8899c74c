"""Notifications between processes: PostgreSQL NOTIFY channels that wake workers. A notification only rings the
bell; the work itself is always in a table, so a missed one costs a poll interval, never a message.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import psycopg
from psycopg import sql

SPOOL_CHANNEL = 'postdesk_spool'        # a message was spooled: intake workers wake
AGENTS_CHANNEL = 'postdesk_agents'      # an agent's credentials or mailboxes changed (a trigger, schema.sql)
OUTBOX_CHANNEL = 'postdesk_outbox'      # a message was queued: delivery workers wake


def notify(conn: psycopg.Connection, channel: str, payload: str = '') -> None:
    conn.execute('SELECT pg_notify(%s, %s)', (channel, payload))


def listen(conn: psycopg.Connection, channel: str) -> None:
    conn.execute(sql.SQL('LISTEN {}').format(sql.Identifier(channel)))


async def listen_forever(url: str, channel: str, on_notify: Callable[[], Awaitable[None]],
                         on_lost: Callable[[], Awaitable[None]], retry_seconds: float = 2.0) -> None:
    """LISTEN on a channel until cancelled: `on_notify()` once listening and at every notification, `on_lost()`
    when the connection breaks (it is opened again after a pause)."""
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                await conn.execute(sql.SQL('LISTEN {}').format(sql.Identifier(channel)))
                await on_notify()
                async for _ in conn.notifies():
                    await on_notify()
        except (psycopg.Error, OSError):
            await on_lost()
            await asyncio.sleep(retry_seconds)
