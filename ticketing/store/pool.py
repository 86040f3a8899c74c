"""The HTTP API's connections: an asynchronous pool (psycopg_pool) the routes read from on the event loop, and a
small synchronous pool for the operations that run in threads (intake, replies, ticket saves), each call on a
connection of its own. Both are autocommit (an operation opens its own transaction), and every statement sent
through them is counted (`postdesk_api_database_statements`), which is how a test holds "no query per row".

A database that cannot be reached makes `connection()` raise DatabaseBusy after the configured timeout: the
API answers 503 with Retry-After, as SMTP answers 451. A connection the server closed under the pool (a
restart, pg_terminate_backend) costs no request an error: a read that finds its connection gone checks the
pool's other idle connections and runs once more; an operation's connection is looked at before it is used (an
idle connection with bytes to read was closed by the server: one select(), no round trip), and when it was
closed the pool's idle connections are checked and replaced at once (the pool's own check would back off a
second or more per dead connection).
"""
from __future__ import annotations

import contextlib
import select
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from ..metrics import count_statement

AsyncConnection = psycopg.AsyncConnection


class DatabaseBusy(Exception):
    """No connection could be had in time: PostgreSQL is down, or every connection is in use."""


class CountingAsyncCursor(psycopg.AsyncCursor):
    async def execute(self, query, params=None, **kwargs):
        count_statement()
        return await super().execute(query, params, **kwargs)


class CountingCursor(psycopg.Cursor):
    def execute(self, query, params=None, **kwargs):
        count_statement()
        return super().execute(query, params, **kwargs)

    def executemany(self, query, params_seq, **kwargs):
        count_statement()
        return super().executemany(query, params_seq, **kwargs)


class Pools:
    """The two pools of one API server."""

    def __init__(self, url: str, size: int, timeout: float):
        self.timeout = timeout
        self.reads = AsyncConnectionPool(url, min_size=min(2, size), max_size=size, open=False, timeout=timeout,
                                         name='postdesk-api',
                                         kwargs={'autocommit': True, 'cursor_factory': CountingAsyncCursor,
                                                 'connect_timeout': max(1, int(timeout))})
        self.writes = ConnectionPool(url, min_size=1, max_size=size, open=False, timeout=timeout,
                                     name='postdesk-api-operations',
                                     kwargs={'autocommit': True, 'cursor_factory': CountingCursor,
                                             'connect_timeout': max(1, int(timeout))})

    async def open(self) -> None:
        await self.reads.open(wait=False)
        self.writes.open(wait=False)

    async def close(self) -> None:
        await self.reads.close()
        self.writes.close()

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        """A connection for reading on the loop. Raises DatabaseBusy."""
        try:
            async with self.reads.connection(self.timeout) as conn:
                yield conn
        except PoolTimeout as exc:
            raise DatabaseBusy(str(exc)) from exc

    async def read(self, query: Callable[..., Awaitable], *args):
        """`await query(conn, *args)` on a connection of the loop's pool; once more on a fresh connection when
        the first was closed under the pool. Raises DatabaseBusy, psycopg's errors."""
        for attempt in range(2):
            async with self.connection() as conn:
                try:
                    return await query(conn, *args)
                except psycopg.OperationalError:
                    if attempt or not conn.broken:
                        raise
            await self.reads.check()

    @contextlib.contextmanager
    def operation_connection(self) -> Iterator[psycopg.Connection]:
        """A connection for one operation in a thread. Raises DatabaseBusy."""
        try:
            conn = self.writes.getconn(self.timeout)
            if closed_by_server(conn):
                self.writes.putconn(conn)
                self.writes.check()
                conn = self.writes.getconn(self.timeout)
        except PoolTimeout as exc:
            raise DatabaseBusy(str(exc)) from exc
        try:
            yield conn
        finally:
            self.writes.putconn(conn)


def closed_by_server(conn: psycopg.Connection) -> bool:
    """Whether an idle connection was closed by the server: an idle connection has nothing to read unless the
    server said goodbye (or sent a notice, which an empty query then tells apart)."""
    if conn.closed or conn.broken:
        return True
    readable, _, _ = select.select([conn.fileno()], [], [], 0)
    if not readable:
        return False
    try:
        conn.execute('')
    except psycopg.OperationalError:
        return True
    return False


async def ping(conn: psycopg.AsyncConnection) -> None:
    await conn.execute('SELECT 1')
