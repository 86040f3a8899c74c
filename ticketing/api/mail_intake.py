"""CreateTicketFromMailData's messages are parsed and stored in worker processes (operations.mail_workers), in
batches, as SMTP's spool writer shares commits: requests that arrive while the workers are busy wait for the next
batch, which takes all of them (up to the intake's batch size) in one transaction. Each worker stores one batch at
a time, and the workers store theirs at once; one request alone is stored at once.

A message that crashes its worker (a hard crash, not an exception) costs only that worker: the messages of the
batches that were running are stored again one at a time, each in a pool of its own, and the one that crashes
again is quarantined as not parseable; the server goes on. When no worker can be started at all, batches are
stored in a thread of this process instead.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
from concurrent.futures.process import BrokenProcessPool

from ..config import Config
from ..intake.parse_ahead import PARSE_WORKERS, ParseResult
from ..intake.worker_pool import WorkerPool, WorkersUnavailable
from ..operations import mail_workers
from ..operations.mail import MailRequest, MailResult, UnknownMailboxId, create_from_mails
from ..store.pool import Pools

log = logging.getLogger('postdesk.api')
CRASHED = 'the parser crashed on it (its worker process died)'
FINISH_SECONDS = 30        # at close, batches being stored may finish for so long


class MailIntake:
    def __init__(self, pools: Pools, config: Config, workers: int = PARSE_WORKERS):
        self.pools, self.config, self.workers = pools, config, workers
        self.pool = self.new_pool(workers)
        self.queue: asyncio.Queue | None = None
        self.batchers: list[asyncio.Task] = []
        self.storing: set[asyncio.Future] = set()
        self.alone = asyncio.Lock()           # messages stored again after a crash, one at a time

    def new_pool(self, workers: int) -> WorkerPool:
        return WorkerPool(workers, mail_workers.PRELOAD, mail_workers.start, (self.config,))

    async def store(self, request: MailRequest) -> MailResult:
        """What became of the message. Raises UnknownMailboxId, or what storing raised (DatabaseUnavailable...)."""
        if not self.batchers or all(task.done() for task in self.batchers):
            self.queue = asyncio.Queue()
            self.batchers = [asyncio.create_task(self.run()) for _ in range(self.workers)]
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((request, future))
        result = await future
        if isinstance(result, UnknownMailboxId):
            raise result
        return result

    async def next_batch(self) -> list:
        """The next request, and those waiting with it."""
        batch = [await self.queue.get()]
        while len(batch) < self.config.batch_size and not self.queue.empty():
            batch.append(self.queue.get_nowait())
        return batch

    async def run(self) -> None:
        while True:
            batch = await self.next_batch()
            try:
                results = await self.store_batch([request for request, _ in batch])
            except Exception as exc:          # every waiting request gets the error; the batcher goes on
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results):
                if not future.done():
                    future.set_result(result)

    async def store_batch(self, requests: list[MailRequest]) -> list:
        try:
            return await self.in_worker(self.pool, requests)
        except BrokenProcessPool:
            return await self.store_alone(requests)
        except WorkersUnavailable as exc:
            log.warning('no intake worker could be started (%s); storing in this process', exc)
            return await asyncio.to_thread(self.store_now, requests)

    async def in_worker(self, pool: WorkerPool, requests: list[MailRequest]) -> list:
        """The batch stored by a worker. Once it is being stored, it is let finish even when the request waiting
        for it is cancelled (a shutdown whose grace ended): what was stored is answered as stored."""
        running = asyncio.ensure_future(pool.run(mail_workers.store, requests))
        self.storing.add(running)
        running.add_done_callback(self.storing.discard)
        return await asyncio.shield(running)

    async def store_alone(self, requests: list[MailRequest]) -> list:
        """After a crash: each message on its own, in a pool of its own, so that a crash now is that message's."""
        results = []
        async with self.alone:
            for request in requests:
                pool = self.new_pool(1)
                try:
                    results += await self.in_worker(pool, [request])
                except BrokenProcessPool:
                    log.error('a message crashed its intake worker twice; it is quarantined')
                    crashed = dataclasses.replace(request, parsed=ParseResult(None, CRASHED))
                    results += await asyncio.to_thread(self.store_now, [crashed])
                finally:
                    pool.close()
        return results

    def store_now(self, requests: list[MailRequest]) -> list:
        with self.pools.operation_connection() as conn:
            return create_from_mails(conn, self.config, requests)

    def warm(self) -> None:
        """Start the workers and their connections now rather than at the first message (blocks: call it in a
        thread)."""
        self.pool.warm(mail_workers.open_connection)

    async def close(self) -> None:
        if self.storing:
            await asyncio.wait(set(self.storing), timeout=FINISH_SECONDS)
        for task in self.batchers:
            task.cancel()
        await asyncio.gather(*self.batchers, return_exceptions=True)
        self.pool.close()
