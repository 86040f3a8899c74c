"""The spool writer: the one durability promise of SMTP and LMTP intake. A message's DATA is answered `250` only
after the transaction holding its bytes and envelope has committed (see `ticketing.store.spool`).

Group commit: messages arriving on concurrent sessions share transactions, so one commit (and one fsync) covers
several of them; each caller still gets its answer only after the commit that holds its message. Each writer
task keeps its own connection; one that fails is dropped and opened again for the next batch.
"""
from __future__ import annotations

import asyncio
import logging

from ..model import Envelope
from ..store.db import first_line
from ..store.spool import SpoolUnavailable, close_quietly, connect_async, store_raw

log = logging.getLogger('postdesk.spool')


class SpoolWriter:
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

    async def _next_batch(self) -> list:
        batch = [await self.queue.get()]
        size = len(batch[0][0])
        while len(batch) < self.max_batch and size < self.max_batch_bytes and not self.queue.empty():
            batch.append(self.queue.get_nowait())     # large messages make small batches: one statement
            size += len(batch[-1][0])                 # stays far below PostgreSQL's 1 GB message limit
        return batch

    async def _write(self) -> None:
        conn = None
        while True:
            batch = await self._next_batch()
            try:
                conn = conn if conn is not None and not conn.closed else await connect_async(self.url, self.timeout)
                ids = await store_raw(conn, [(data, envelope) for data, envelope, _ in batch], self.timeout)
            except SpoolUnavailable as exc:
                conn = await close_quietly(conn)
                settle(batch, exception=exc)
                continue
            except Exception as exc:          # never let a writer die: its callers would wait for ever
                log.exception('spool writer: unexpected error; the batch gets 451')
                conn = await close_quietly(conn)
                settle(batch, exception=SpoolUnavailable('unexpected error: %s' % first_line(exc)))
                continue
            settle(batch, results=ids)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def settle(batch: list, results: list[int] | None = None, exception: Exception | None = None) -> None:
    for index, (_, _, future) in enumerate(batch):
        if future.done():
            continue
        if exception is not None:
            future.set_exception(exception)
        else:
            future.set_result(results[index])
