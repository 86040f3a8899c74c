"""CreateTicketFromMailData's messages are parsed and stored in worker processes (operations.mail_workers), in
batches, as SMTP's spool writer shares commits: requests that arrive while the workers are busy wait for the next
batch, which takes all of them (up to the intake's batch size) in one transaction. Each worker (a process of its
own, intake.worker_pool) stores one batch at a time, and the workers store theirs at once; one request alone is
stored at once. While another worker is storing, a batch waits a moment for more requests (the clients just
answered send their next at once), and it takes at most an even share of the requests in the intake, so that the
workers' batches stay even.

A message that crashes its worker (a hard crash, not an exception) costs only that worker and its batch (the
other workers are other processes): the batch's messages are stored again one at a time, each in a new worker of
its own, and the one that crashes again is quarantined as not parseable; the server goes on. When no worker can
be started at all, batches are stored in a thread of this process instead.

A request whose batch has started is answered with what became of its message, even when the shutdown's grace
ends meanwhile; one whose batch has not started yet when the grace ends is answered 503 and its message is not
stored (the client sends it again).
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass, field

from ..config import Config
from ..intake.parse_ahead import PARSE_WORKERS, ParseResult
from ..intake.worker_pool import WorkerDied, WorkerProcess, WorkersUnavailable
from ..operations import mail_workers
from ..operations.mail import MailRequest, MailResult, UnknownMailboxId, create_from_mails, stored_already
from ..store.pool import Pools

log = logging.getLogger('postdesk.api')
CRASHED = 'the parser crashed on it (its worker process died)'
LINGER_SECONDS = 0.002     # while another worker stores, a batch waits so long for one more request
FINISH_SECONDS = 30        # at close, batches being stored may finish for so long


@dataclass(eq=False)
class Waiting:
    """A request waiting for its batch, and whether its batch has started."""
    request: MailRequest
    answer: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    started: bool = False


class MailIntake:
    def __init__(self, pools: Pools, config: Config, workers: int = PARSE_WORKERS):
        self.pools, self.config = pools, config
        self.workers = [self.new_worker() for _ in range(workers)]
        self.queue: asyncio.Queue | None = None
        self.batchers: list[asyncio.Task] = []
        self.storing: set[asyncio.Future] = set()
        self.requests = 0                  # requests waiting for their answer

    def new_worker(self) -> WorkerProcess:
        return WorkerProcess(mail_workers.PRELOAD, mail_workers.start, (self.config,))

    async def store(self, request: MailRequest) -> MailResult:
        """What became of the message. Raises UnknownMailboxId, or what storing raised (DatabaseUnavailable...)."""
        if not self.batchers or all(task.done() for task in self.batchers):
            self.queue = asyncio.Queue()
            self.batchers = [asyncio.create_task(self.run(worker)) for worker in self.workers]
        waiting = Waiting(request)
        self.requests += 1
        try:
            await self.queue.put(waiting)
            result = await answer_of(waiting)
        finally:
            self.requests -= 1
        if isinstance(result, UnknownMailboxId):
            raise result
        return result

    async def next_batch(self) -> list[Waiting]:
        """The next requests still waiting (up to the batch size), marked started."""
        batch = []
        while len(batch) < self.batch_limit():
            waiting = await self.next_waiting(first=not batch)
            if waiting is None:
                break
            if not waiting.answer.done():         # else its request was cancelled before its batch started
                waiting.started = True
                batch.append(waiting)
        return batch

    def batch_limit(self) -> int:
        """The batch size, or an even share of the requests in the intake (waiting, or in batches being stored)
        when that is less: the workers' batches stay even, as one batch of seven beside one of one takes longer
        than two of four."""
        share = -(-self.requests // len(self.workers))
        return max(1, min(self.config.batch_size, share))

    async def next_waiting(self, first: bool) -> Waiting | None:
        """The next request of the queue, waited for when the batch has none yet; None when the batch should
        start. While another worker is storing (the intake is busy), the batch waits LINGER_SECONDS for one
        more: the clients just answered send their next messages at once, and a batch of one costs nearly what
        a batch of four does."""
        if first:
            return await self.queue.get()
        if not self.queue.empty():
            return self.queue.get_nowait()
        if not self.storing:
            return None
        try:
            async with asyncio.timeout(LINGER_SECONDS):
                return await self.queue.get()
        except TimeoutError:
            return None

    async def run(self, worker: WorkerProcess) -> None:
        while True:
            batch = await self.next_batch()
            try:
                results = await self.store_batch(worker, [waiting.request for waiting in batch])
            except Exception as exc:          # every waiting request gets the error; the batcher goes on
                for waiting in batch:
                    if not waiting.answer.done():
                        waiting.answer.set_exception(exc)
                continue
            for waiting, result in zip(batch, results):
                if not waiting.answer.done():
                    waiting.answer.set_result(result)

    async def store_batch(self, worker: WorkerProcess, requests: list[MailRequest]) -> list:
        try:
            return await self.in_worker(worker, requests)
        except WorkerDied:
            return await self.store_alone(requests)
        except WorkersUnavailable as exc:
            return await self.store_here(requests, exc)

    async def in_worker(self, worker: WorkerProcess, requests: list[MailRequest]) -> list:
        """The batch stored by a worker. Once it is being stored, it is let finish even when the request waiting
        for it is cancelled (a shutdown whose grace ended): what was stored is answered as stored."""
        running = asyncio.ensure_future(worker.run(mail_workers.store, requests))
        self.storing.add(running)
        running.add_done_callback(self.storing.discard)
        return await asyncio.shield(running)

    async def store_alone(self, requests: list[MailRequest]) -> list:
        """After a crash: each message on its own, in a new worker of its own, so that a crash now is that
        message's."""
        results = []
        for request in requests:
            worker = self.new_worker()
            try:
                results += await self.in_worker(worker, [request])
            except WorkerDied:
                results += await asyncio.to_thread(self.after_second_crash, request)
            except WorkersUnavailable as exc:
                results += await self.store_here([request], exc)
            finally:
                worker.close()
        return results

    async def store_here(self, requests: list[MailRequest], why: WorkersUnavailable) -> list:
        log.warning('no intake worker could be started (%s); storing in this process', why)
        return await asyncio.to_thread(self.store_now, requests)

    def after_second_crash(self, request: MailRequest) -> list:
        """A message whose worker died twice: stored already (the worker died after its commit), or quarantined
        as one that crashes the parser."""
        with self.pools.operation_connection() as conn:
            stored = stored_already(conn, request)
        if stored is not None:
            log.warning('an intake worker died after storing a message; it is answered as stored')
            return [stored]
        log.error('a message crashed its intake worker twice; it is quarantined')
        return self.store_now([dataclasses.replace(request, parsed=ParseResult(None, CRASHED))])

    def store_now(self, requests: list[MailRequest]) -> list:
        with self.pools.operation_connection() as conn:
            return create_from_mails(conn, self.config, requests)

    async def warm(self) -> None:
        """Start the workers and their connections now rather than at the first message."""
        await asyncio.gather(*(worker.run(mail_workers.open_connection) for worker in self.workers))

    async def close(self) -> None:
        if self.storing:
            await asyncio.wait(set(self.storing), timeout=FINISH_SECONDS)
        for task in self.batchers:
            task.cancel()
        await asyncio.gather(*self.batchers, return_exceptions=True)
        for worker in self.workers:
            worker.close()


async def answer_of(waiting: Waiting):
    """The request's answer. Cancelled (the shutdown's grace ended) before its batch started, the request gives up
    its place; after, it waits for the batch: what was stored is answered as stored."""
    try:
        return await asyncio.shield(waiting.answer)
    except asyncio.CancelledError:
        if not waiting.started:
            waiting.answer.cancel()
            raise
        asyncio.current_task().uncancel()
        return await asyncio.shield(waiting.answer)
