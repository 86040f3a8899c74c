"""Notifications: PostgreSQL NOTIFY channels that wake workers, and the event table behind the agents' CometD
channels with the sessions of their clients.

A NOTIFY only rings the bell; the work itself is always in a table, so a missed one costs a poll interval, never
a message. Events are written in the same transaction as the change they report, under a transaction-level
advisory lock held until commit: events therefore commit in the order of their ids, and a reader that has seen
event N will never later find an event below N (which a plain sequence would allow). A client session remembers
the last event it was given; any process can serve it.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from ..model import Event

SPOOL_CHANNEL = 'postdesk_spool'        # a message was spooled: intake workers wake
AGENTS_CHANNEL = 'postdesk_agents'      # an agent's credentials or mailboxes changed (a trigger, schema.sql)
OUTBOX_CHANNEL = 'postdesk_outbox'      # a message was queued: delivery workers wake
EVENT_CHANNEL = 'postdesk_events'       # an event was committed: notification endpoints wake
WORK_CHANNEL = 'postdesk_work'          # work was queued or an agent got ready: offering wakes
EVENT_ORDER_LOCK = 8_317_224_053        # pg_advisory_xact_lock key: events commit in id order


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

def add_events(conn: psycopg.Connection, events: list[tuple[int, str, dict]]) -> None:
    """(agent_id, channel, data) events, committed with the caller's transaction; the endpoints are woken."""
    if not events:
        return
    conn.execute('SELECT pg_advisory_xact_lock(%s)', (EVENT_ORDER_LOCK,))
    with conn.cursor() as cur:
        cur.executemany('INSERT INTO event (agent_id, channel, data) VALUES (%s, %s, %s)',
                        [(agent, channel, Jsonb(data)) for agent, channel, data in events])
    notify(conn, EVENT_CHANNEL)


def last_event_id(conn: psycopg.Connection) -> int:
    return conn.execute('SELECT coalesce(max(event_id), 0) FROM event').fetchone()[0]


def events_for_session(conn: psycopg.Connection, client_id: str, limit: int = 500) -> list[Event]:
    """The events of the session's agent on the channels it subscribes to now, after the last it was given.
    Call in a transaction: the session's row stays locked until it ends, so that concurrent connects of one
    client take each event once."""
    session = conn.execute('SELECT agent_id, last_event, subscriptions FROM notification_session '
                           'WHERE client_id = %s FOR UPDATE', (client_id,)).fetchone()
    if session is None:
        return []
    rows = conn.execute('SELECT event_id, agent_id, channel, data FROM event WHERE agent_id = %s '
                        'AND event_id > %s AND channel = ANY(%s) ORDER BY event_id LIMIT %s',
                        (*session, limit)).fetchall()
    return [Event(*row) for row in rows]


# --------------------------------------------------------------------------------------- client sessions

def open_session(conn: psycopg.Connection, client_id: str, agent_id: int) -> None:
    """A new client starts at the newest event: what happened before it connected is not replayed."""
    conn.execute('INSERT INTO notification_session (client_id, agent_id, last_event) '
                 'VALUES (%s, %s, (SELECT coalesce(max(event_id), 0) FROM event))', (client_id, agent_id))


def session_of(conn: psycopg.Connection, client_id: str, ttl: float) -> tuple[int, list[str], int] | None:
    """(agent_id, subscriptions, last event given) of a session seen within `ttl` seconds, which is kept alive."""
    row = conn.execute('UPDATE notification_session SET last_seen = now() WHERE client_id = %s '
                       'AND last_seen > now() - make_interval(secs => %s) '
                       'RETURNING agent_id, subscriptions, last_event', (client_id, ttl)).fetchone()
    return (row[0], list(row[1]), row[2]) if row else None


def set_subscriptions(conn: psycopg.Connection, client_id: str, subscriptions: list[str]) -> None:
    conn.execute('UPDATE notification_session SET subscriptions = %s WHERE client_id = %s',
                 (sorted(set(subscriptions)), client_id))


def advance_session(conn: psycopg.Connection, client_id: str, last_event: int) -> None:
    conn.execute('UPDATE notification_session SET last_event = greatest(last_event, %s), last_seen = now() '
                 'WHERE client_id = %s', (last_event, client_id))


def close_session(conn: psycopg.Connection, client_id: str) -> None:
    conn.execute('DELETE FROM notification_session WHERE client_id = %s', (client_id,))


def purge_sessions(conn: psycopg.Connection, ttl: float) -> int:
    """Sessions not seen within `ttl` seconds are gone (their clients must handshake again)."""
    return conn.execute('DELETE FROM notification_session WHERE last_seen < now() - make_interval(secs => %s)',
                        (ttl,)).rowcount


def purge_events(conn: psycopg.Connection, older_than: float) -> int:
    """Events older than any live session can still be owed (a session lives `ttl` after its last connect, and
    each connect takes everything pending), in batches so no statement holds many rows."""
    return conn.execute('DELETE FROM event WHERE event_id IN (SELECT event_id FROM event WHERE created_at < '
                        'now() - make_interval(secs => %s) ORDER BY created_at LIMIT 10000)', (older_than,)).rowcount
