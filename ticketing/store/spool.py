"""The spool (table raw_message): raw messages accepted over SMTP/LMTP, stored before the `250` is sent, then made
into tickets by intake workers.

Storing is one statement on an autocommit connection, so its result arrives only after the commit; the sha256
that identifies the bytes is computed by PostgreSQL, never on the listeners' event loop. A worker claims rows by
writing its connection's backend pid into them (FOR UPDATE SKIP LOCKED picks them, so two workers never claim
the same row) and commits at once: it then parses outside any transaction, and stores the tickets and marks the
rows done in one transaction, which first checks that the rows are still its own. A claim ends with that
transaction, with `release_claims`, or with the claiming connection: a row claimed by a backend that no longer
exists is claimed again. Every claim counts an attempt; a claim found stale counts a crash, unless the server
restarted since it was taken (an outage, not a crash) or the worker released it after losing its connection
(`release_lost_claims`): what is left is a worker process that died holding the row.
"""
from __future__ import annotations

import asyncio

import psycopg
from psycopg import sql

from ..model import Envelope, Mailbox, Pending
from ..statuses import SPOOL_PENDING
from . import events
from .db import first_line
from .mailboxes import load_mailboxes_async


class SpoolUnavailable(Exception):
    """The spool could not be written or read now (database down, timeout): the sender must retry (451)."""


async def connect_async(url: str, timeout: float) -> psycopg.AsyncConnection:
    try:
        return await asyncio.wait_for(psycopg.AsyncConnection.connect(
            url, autocommit=True, connect_timeout=max(1, int(timeout))), timeout)
    except (psycopg.Error, OSError, asyncio.TimeoutError) as exc:
        raise SpoolUnavailable('cannot connect to PostgreSQL: %s' % first_line(exc)) from exc


def _text(value: str | None) -> str:
    """Envelope text as PostgreSQL takes it: aiosmtpd keeps undecodable bytes of SMTPUTF8 commands as surrogate
    escapes, which are shown as U+FFFD rather than failing the INSERT."""
    value = (value or '').replace('\x00', '')
    if value.isascii():
        return value
    return value.encode('utf-8', 'surrogateescape').decode('utf-8', 'replace')


async def store_raw(conn: psycopg.AsyncConnection, items: list[tuple[bytes, Envelope]], timeout: float) -> list[int]:
    """Store messages' bytes and envelopes; their raw ids, once committed."""
    rows = [(data, len(data), e.protocol, _text(e.mail_from), [_text(r) for r in e.rcpt_to], _text(e.peer),
             _text(e.helo), e.trace_len) for data, e in items]
    # %b: parameters in binary, so the message bytes cross as they are (in text they would be hex, twice the
    # size, encoded here and decoded by the server).
    values = sql.SQL(', ').join(sql.SQL('(%b::bytea, %b::int4, %b, %b, %b::text[], %b, %b, %b::int4)')
                                for _ in rows)
    statement = sql.SQL(
        'WITH stored AS (INSERT INTO raw_message (sha256, data, size, source, envelope_from, envelope_to, peer, '
        'helo, trace_len, state) SELECT sha256(substr(v.data, v.trace_len + 1)), v.data, v.size, v.source, '
        'v.envelope_from, v.envelope_to, v.peer, v.helo, v.trace_len, %b FROM (VALUES {}) AS v (data, size, source, '
        'envelope_from, envelope_to, peer, helo, trace_len) RETURNING raw_id), woken AS (SELECT pg_notify(%b, \'\')) '
        'SELECT raw_id FROM stored, woken ORDER BY raw_id').format(values)
    params = [SPOOL_PENDING] + [value for row in rows for value in row] + [events.SPOOL_CHANNEL]
    try:
        async with asyncio.timeout(timeout):          # in this task: no task of its own, no turn of the loop more
            cursor = await conn.execute(statement, params)
        return [row[0] for row in await cursor.fetchall()]
    except (psycopg.Error, OSError, asyncio.TimeoutError) as exc:
        raise SpoolUnavailable(first_line(exc)) from exc


# The state is written into the statements as a literal (from statuses) so that the partial index on pending rows
# serves them whatever plan PostgreSQL caches.
_PENDING = sql.Literal(SPOOL_PENDING)
_CLAIM = sql.SQL(
    'WITH c AS (SELECT raw_id, claimed_by IS NOT NULL AND claimed_at > pg_postmaster_start_time() AS crashed '
    '           FROM raw_message WHERE state = {pending} AND (claimed_by IS NULL OR NOT EXISTS '
    '             (SELECT 1 FROM pg_stat_activity a WHERE a.pid = raw_message.claimed_by)) '
    '           ORDER BY raw_id LIMIT %s FOR UPDATE SKIP LOCKED) '
    'UPDATE raw_message r SET claimed_by = pg_backend_pid(), claimed_at = now(), attempts = r.attempts + 1, '
    '       crashes = r.crashes + c.crashed::int '
    'FROM c WHERE r.raw_id = c.raw_id '
    'RETURNING r.raw_id, r.data, r.sha256, r.envelope_from, r.envelope_to, r.peer, r.helo, r.source, '
    '          r.received_at, r.trace_len, r.crashes').format(pending=_PENDING)
_AGES = sql.SQL(
    'SELECT extract(epoch FROM now() - (SELECT received_at FROM raw_message WHERE state = {pending} '
    '                                   ORDER BY raw_id LIMIT 1)), '
    '       extract(epoch FROM now() - (SELECT received_at FROM raw_message WHERE state = {pending} '
    '                                   ORDER BY raw_id DESC LIMIT 1))').format(pending=_PENDING)
_OWN_CLAIMS = sql.SQL('SELECT raw_id FROM raw_message WHERE raw_id = ANY(%s) AND state = {pending} '
                      'AND claimed_by = pg_backend_pid() ORDER BY raw_id FOR UPDATE').format(pending=_PENDING)
_RELEASE = sql.SQL('UPDATE raw_message SET claimed_by = NULL WHERE claimed_by = pg_backend_pid() '
                   'AND state = {pending} AND NOT (raw_id = ANY(%s))').format(pending=_PENDING)
_RELEASE_LOST = sql.SQL('UPDATE raw_message SET claimed_by = NULL WHERE claimed_by = %s AND state = {pending} '
                        'AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = %s)').format(pending=_PENDING)
_QUARANTINE_CLAIMED = sql.SQL(
    'WITH held AS (INSERT INTO quarantine (reason, source, mailbox_hint, sha256, data, raw_id) '
    '              SELECT %s, %s, envelope_to[1], sha256, data, raw_id FROM raw_message '
    '              WHERE raw_id = %s AND claimed_by = pg_backend_pid() AND state = {pending} '
    '              ON CONFLICT DO NOTHING RETURNING raw_id) '
    "UPDATE raw_message SET state = 'quarantined', claimed_by = NULL "
    'WHERE raw_id = %s AND claimed_by = pg_backend_pid() AND state = {pending}').format(pending=_PENDING)


def claim_pending(conn: psycopg.Connection, limit: int) -> list[Pending]:
    """Claim up to `limit` pending rows, oldest first, that no live worker holds; committed at once (call with
    autocommit, outside a transaction)."""
    rows = conn.execute(_CLAIM, (limit,)).fetchall()
    return sorted((_pending(row) for row in rows), key=lambda p: p.raw_id)


def _pending(row: tuple) -> Pending:
    raw_id, data, digest, sender, rcpt, peer, helo, source, received, trace_len, crashes = row
    return Pending(raw_id, bytes(data), bytes(digest), sender, tuple(rcpt or ()), peer, helo, source, received,
                   trace_len, crashes)


def lock_own_claims(conn: psycopg.Connection, raw_ids: list[int]) -> set[int]:
    """Of these rows, those still pending and claimed by this connection, locked (call in a transaction)."""
    rows = conn.execute(_OWN_CLAIMS, (raw_ids,)).fetchall()
    return {r[0] for r in rows}


def mark(conn: psycopg.Connection, states: dict[int, str]) -> None:
    """Record what became of claimed rows: `done` or `quarantined`; the claim ends."""
    if not states:
        return
    with conn.cursor() as cur:
        cur.executemany('UPDATE raw_message SET state = %s, claimed_by = NULL WHERE raw_id = %s',
                        [(state, raw_id) for raw_id, state in sorted(states.items())])


def release_claims(conn: psycopg.Connection, keep: list[int] = ()) -> None:
    """This connection's claims (but those in `keep`) end without an outcome: the rows are pending for any worker
    again."""
    conn.execute(_RELEASE, (list(keep),))


def backend_pid(conn: psycopg.Connection) -> int:
    """The server process of this connection: what its claims carry."""
    return conn.info.backend_pid


def release_lost_claims(conn: psycopg.Connection, lost_backend: int) -> None:
    """The claims of this worker's previous connection, lost with it (a database outage, not a crash): pending
    again, without counting a crash."""
    conn.execute(_RELEASE_LOST, (lost_backend, lost_backend))


def quarantine_claimed(conn: psycopg.Connection, raw_id: int, source: str, reason: str) -> None:
    """Quarantine a claimed row as it is, without parsing it (it killed the workers that tried)."""
    conn.execute(_QUARANTINE_CLAIMED, (reason, source, raw_id, raw_id))


def pending_ages(conn: psycopg.Connection) -> tuple[float | None, float]:
    """Seconds the oldest pending message has waited (None when none waits), and since the newest arrived. Two
    index probes (the pending index is in raw_id order, which is arrival order), however long the spool is."""
    waited, quiet = conn.execute(_AGES).fetchone()
    return (float(waited) if waited is not None else None), (float(quiet) if quiet is not None else 0.0)


async def close_quietly(conn: psycopg.AsyncConnection | None) -> None:
    """Close a connection that may be broken already (a new one is opened for the next batch)."""
    if conn is not None:
        try:
            await conn.close()
        except psycopg.Error:
            pass


async def load_mailboxes_now(url: str, timeout: float) -> list[Mailbox]:
    """The mailboxes, read on a connection of their own (the SMTP listener's recipient check)."""
    conn = await connect_async(url, timeout)
    try:
        return await load_mailboxes_async(conn, timeout)
    except (psycopg.Error, asyncio.TimeoutError) as exc:
        raise SpoolUnavailable(first_line(exc)) from exc
    finally:
        await close_quietly(conn)
