"""The spool writer: the one durability promise of SMTP and LMTP intake. A message's DATA is answered `250` only
after the transaction holding its bytes and envelope has committed (see `ticketing.store.spool`).

Group commit: messages arriving on concurrent sessions share transactions, so one commit (and one fsync) covers
several of them; each caller still gets its answer only after the commit that holds its message. The session
that finds a writer free writes the batch itself (its own message and those waiting), so a message costs no
hand-over to another task and back, which on a loop busy with HTTP requests is a turn of the loop each way;
the others wait for the next batch. Each of the `writers` connections is kept open; one that fails is dropped
and opened again for the next batch.
"""
from __future__ import annotations

import asyncio
import collections
import logging

from ..model import Envelope
from ..store.db import first_line
from ..store.spool import SpoolUnavailable, close_quietly, connect_async, store_raw

log = logging.getLogger('postdesk.spool')


class SpoolWriter:
    def __init__(self, url: str, timeout: float, writers: int = 2, max_batch: int = 64,
                 max_batch_bytes: int = 8 * 1024 * 1024):
        self.url, self.timeout, self.max_batch, self.max_batch_bytes = url, timeout, max_batch, max_batch_bytes
        self.waiting: collections.deque = collections.deque()
        self.connections: list = [None] * writers          # a writer free: its connection (None: not open yet)
        self.draining: set[asyncio.Task] = set()

    async def accept(self, data: bytes, envelope: Envelope) -> int:
        """The raw id of the stored message; raises SpoolUnavailable when it could not be stored."""
        future = asyncio.get_running_loop().create_future()
        self.waiting.append((data, envelope, future))
        if self.connections:
            await self._write_batch(self.connections.pop())
            self._drain_rest()
        return await future

    def _next_batch(self) -> list:
        batch = [self.waiting.popleft()]
        size = len(batch[0][0])
        while len(batch) < self.max_batch and size < self.max_batch_bytes and self.waiting:
            batch.append(self.waiting.popleft())      # large messages make small batches: one statement
            size += len(batch[-1][0])                 # stays far below PostgreSQL's 1 GB message limit
        return batch

    async def _write_batch(self, conn) -> None:
        """Write the next batch on a free writer's connection and settle its callers; the writer is free again
        afterwards, whatever happened."""
        batch = self._next_batch() if self.waiting else []
        try:
            if batch:
                conn = conn if conn is not None and not conn.closed else await connect_async(self.url, self.timeout)
                settle(batch, results=await store_raw(conn, [(data, e) for data, e, _ in batch], self.timeout))
        except SpoolUnavailable as exc:
            conn = await close_quietly(conn)
            settle(batch, exception=exc)
        except Exception as exc:              # never leave a caller waiting for ever
            log.exception('spool writer: unexpected error; the batch gets 451')
            conn = await close_quietly(conn)
            settle(batch, exception=SpoolUnavailable('unexpected error: %s' % first_line(exc)))
        except asyncio.CancelledError:        # the writing session was cancelled (a shutdown past its grace)
            self._close_later(conn)
            conn = None
            settle(batch, exception=SpoolUnavailable('the server is shutting down'))
            raise
        finally:
            self.connections.append(conn)

    def _drain_rest(self) -> None:
        """Messages that arrived while every writer was busy: written by a task, once a writer is free."""
        if self.waiting and self.connections:
            task = asyncio.ensure_future(self._drain())
            self.draining.add(task)
            task.add_done_callback(self.draining.discard)

    async def _drain(self) -> None:
        while self.waiting and self.connections:
            await self._write_batch(self.connections.pop())

    def _close_later(self, conn) -> None:
        """A connection left in the middle of a statement: closed by a task of its own."""
        if conn is not None:
            task = asyncio.ensure_future(close_quietly(conn))
            self.draining.add(task)
            task.add_done_callback(self.draining.discard)

    async def close(self) -> None:
        for task in list(self.draining):
            task.cancel()
        await asyncio.gather(*self.draining, return_exceptions=True)
        settle(list(self.waiting), exception=SpoolUnavailable('the server is shutting down'))
        self.waiting.clear()
        for conn in self.connections:
            await close_quietly(conn)


def settle(batch: list, results: list[int] | None = None, exception: Exception | None = None) -> None:
    for index, (_, _, future) in enumerate(batch):
        if future.done():
            continue
        if exception is not None:
            future.set_exception(exception)
        else:
            future.set_result(results[index])
