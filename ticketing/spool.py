"""The spool: raw messages accepted over SMTP/LMTP, stored before the `250` is sent, then made into tickets by
intake workers (issue 4).

Accepting is one INSERT, committed, with asynchronous psycopg on the server's event loop (messages arriving at
the same moment share it: group commit); the reply to DATA is sent only after that commit. The row stays `pending` until a worker has stored it as tickets (or quarantined it)
in the same transaction that marks it `done`; workers claim rows with FOR UPDATE SKIP LOCKED, so several of
them, on several machines, never take the same message, and a row left by a crash is simply taken again.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass

import psycopg
from psycopg import sql

from .db import first_line

NOTIFY_CHANNEL = 'postdesk_spool'
log = logging.getLogger('postdesk.spool')


@dataclass(frozen=True)
class Envelope:
    mail_from: str
    rcpt_to: tuple[str, ...]
    peer: str
    helo: str
    protocol: str                 # smtp or lmtp
    trace_len: int = 0            # bytes of the Received: header postdesk put in front of the message


@dataclass(frozen=True)
class Pending:
    raw_id: int
    data: bytes
    envelope_from: str | None
    envelope_to: tuple[str, ...]
    peer: str | None
    helo: str | None
    source: str
    received_at: object
    trace_len: int = 0


class SpoolUnavailable(Exception):
    """The spool could not be written or read now (database down, timeout): the sender must retry (451)."""


async def connect_async(url: str, timeout: float) -> psycopg.AsyncConnection:
    try:
        return await asyncio.wait_for(psycopg.AsyncConnection.connect(
            url, autocommit=True, connect_timeout=max(1, int(timeout))), timeout)
    except (psycopg.Error, OSError, asyncio.TimeoutError) as exc:
        raise SpoolUnavailable('cannot connect to PostgreSQL: %s' % first_line(exc)) from exc


async def store_raw(conn: psycopg.AsyncConnection, items: list[tuple[bytes, Envelope]], timeout: float) -> list[int]:
    """Store messages' bytes and envelopes; their raw ids, once committed. One statement, so one round trip: on an
    autocommit connection it is its own transaction, and its result arrives only after the commit."""
    rows = [(hashlib.sha256(memoryview(data)[e.trace_len:]).digest(), data, len(data), e.protocol,
             _text(e.mail_from), [_text(r) for r in e.rcpt_to], _text(e.peer), _text(e.helo), e.trace_len)
            for data, e in items]
    # %b: parameters in binary, so the message bytes cross as they are (in text they would be hex, twice the
    # size, encoded here and decoded by the server).
    values = sql.SQL(', ').join(sql.SQL("(%b, %b, %b, %b, %b, %b, %b, %b, %b, 'pending')") for _ in rows)
    statement = sql.SQL(
        'WITH stored AS (INSERT INTO raw_message (sha256, data, size, source, envelope_from, envelope_to, peer, '
        'helo, trace_len, state) VALUES {} RETURNING raw_id), woken AS (SELECT pg_notify(%s, \'\')) '
        'SELECT raw_id FROM stored, woken ORDER BY raw_id').format(values)
    params = [value for row in rows for value in row] + [NOTIFY_CHANNEL]
    try:
        cursor = await asyncio.wait_for(conn.execute(statement, params), timeout)
        return [row[0] for row in await cursor.fetchall()]
    except (psycopg.Error, OSError, asyncio.TimeoutError) as exc:
        raise SpoolUnavailable(first_line(exc)) from exc


def _text(value: str | None) -> str:
    """Envelope text as PostgreSQL takes it: aiosmtpd keeps undecodable bytes of SMTPUTF8 commands as surrogate
    escapes, which are shown as U+FFFD rather than failing the INSERT."""
    value = (value or '').replace('\x00', '')
    if value.isascii():
        return value
    return value.encode('utf-8', 'surrogateescape').decode('utf-8', 'replace')



class SpoolWriter:
    """Group commit: messages arriving on concurrent sessions share transactions, so one commit (and one fsync)
    covers several of them. Each caller still gets its reply only after the commit that holds its message.
    Each writer task keeps its own connection; one that fails is dropped and opened again for the next batch."""

    def __init__(self, url: str, timeout: float, writers: int = 2, max_batch: int = 64,
                 max_batch_bytes: int = 8 * 1024 * 1024):
        self.url, self.timeout, self.max_batch, self.max_batch_bytes = url, timeout, max_batch, max_batch_bytes
        self.queue: asyncio.Queue = asyncio.Queue()
        self.tasks = [asyncio.create_task(self._write()) for _ in range(writers)]

    async def accept(self, data: bytes, envelope: Envelope) -> int:
        """The raw id of the stored message; raises SpoolUnavailable when it could not be stored."""
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((data, envelope, future))
        return await future

    async def _write(self) -> None:
        conn = None
        while True:
            batch = [await self.queue.get()]
            size = len(batch[0][0])
            while len(batch) < self.max_batch and size < self.max_batch_bytes and not self.queue.empty():
                batch.append(self.queue.get_nowait())     # large messages make small batches: one statement
                size += len(batch[-1][0])                 # stays far below PostgreSQL's 1 GB message limit
            try:
                conn = conn if conn is not None and not conn.closed else await connect_async(self.url, self.timeout)
                ids = await store_raw(conn, [(data, envelope) for data, envelope, _ in batch], self.timeout)
            except SpoolUnavailable as exc:
                conn = await _discard(conn)
                _settle(batch, exception=exc)
                continue
            except Exception as exc:          # never let a writer die: its callers would wait for ever
                log.exception('spool writer: unexpected error; the batch gets 451')
                conn = await _discard(conn)
                _settle(batch, exception=SpoolUnavailable('unexpected error: %s' % first_line(exc)))
                continue
            _settle(batch, results=ids)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def _discard(conn: psycopg.AsyncConnection | None) -> None:
    if conn is not None:
        try:
            await conn.close()
        except psycopg.Error:
            pass      # it is broken already; a new one is opened for the next batch
    return None


def _settle(batch: list, results: list[int] | None = None, exception: Exception | None = None) -> None:
    for index, (_, _, future) in enumerate(batch):
        if future.done():
            continue
        if exception is not None:
            future.set_exception(exception)
        else:
            future.set_result(results[index])


async def mailbox_addresses(url: str, timeout: float) -> tuple[set[str], set[str]]:
    """Lower-cased mailbox addresses, and the domains that have a catch-all mailbox."""
    conn = await connect_async(url, timeout)
    try:
        cursor = await asyncio.wait_for(conn.execute('SELECT lower(address), catch_all FROM mailbox'), timeout)
        rows = await cursor.fetchall()
    except (psycopg.Error, asyncio.TimeoutError) as exc:
        raise SpoolUnavailable(first_line(exc)) from exc
    finally:
        await _discard(conn)
    addresses = {address for address, _ in rows}
    catch_all = {address.rpartition('@')[2] for address, flag in rows if flag}
    return addresses, catch_all


def claim_pending(conn: psycopg.Connection, limit: int) -> list[Pending]:
    """Lock up to `limit` pending rows, oldest first, skipping rows another worker holds. Call in a transaction."""
    rows = conn.execute(
        'SELECT raw_id, data, envelope_from, envelope_to, peer, helo, source, received_at, trace_len '
        "FROM raw_message WHERE state = 'pending' ORDER BY raw_id LIMIT %s FOR UPDATE SKIP LOCKED",
        (limit,)).fetchall()
    return [_pending(row) for row in rows]


def _pending(row: tuple) -> Pending:
    raw_id, data, sender, rcpt, peer, helo, source, received, trace_len = row
    return Pending(raw_id, bytes(data), sender, tuple(rcpt or ()), peer, helo, source, received, trace_len)


def mark(conn: psycopg.Connection, states: dict[int, str]) -> None:
    """Record what became of claimed rows: `done` or `quarantined`."""
    with conn.cursor() as cur:
        cur.executemany('UPDATE raw_message SET state = %s WHERE raw_id = %s',
                        [(state, raw_id) for raw_id, state in sorted(states.items())])


def pending_ages(conn: psycopg.Connection) -> tuple[float | None, float]:
    """Seconds the oldest pending message has waited (None when none waits), and since the newest arrived. Two
    index probes (the pending index is in raw_id order, which is arrival order), however long the spool is."""
    waited, quiet = conn.execute(
        "SELECT extract(epoch FROM now() - (SELECT received_at FROM raw_message WHERE state = 'pending' "
        '                                   ORDER BY raw_id LIMIT 1)), '
        "       extract(epoch FROM now() - (SELECT received_at FROM raw_message WHERE state = 'pending' "
        '                                   ORDER BY raw_id DESC LIMIT 1))').fetchone()
    return (float(waited) if waited is not None else None), (float(quiet) if quiet is not None else 0.0)


def listen(conn: psycopg.Connection) -> None:
    conn.execute(sql.SQL('LISTEN {}').format(sql.Identifier(NOTIFY_CHANNEL)))
