"""CreateTicketFromMailData's messages are parsed as they arrive, in worker processes (intake.parse_pool), and
stored in batches, as SMTP's spool writer shares commits: requests that arrive while a batch is being stored
wait for the next one, which takes all of them (up to the intake's batch size) in one operation on one
connection, off the event loop. One request alone is stored at once. Parsing the next messages and storing the
last ones so overlap, on two cores, as replay's parsing ahead does.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging

from ..config import Config
from ..intake import parse_limits
from ..intake.parse_pool import ParsePool
from ..operations.mail import MailRequest, MailResult, UnknownMailboxId, create_from_mails
from ..store.pool import Pools

log = logging.getLogger('postdesk.api')
LINGER_SECONDS = 0.01     # a batch waits at most this long for the messages being parsed when it would start


class MailIntake:
    def __init__(self, pools: Pools, config: Config):
        self.pools, self.config = pools, config
        self.parser = ParsePool(parse_limits(config))
        self.parsing = 0                  # requests whose message is being parsed: they join the next batch
        self.queue: asyncio.Queue | None = None
        self.task: asyncio.Task | None = None

    async def store(self, request: MailRequest) -> MailResult:
        """What became of the message. Raises UnknownMailboxId, or what storing raised (DatabaseBusy...)."""
        self.parsing += 1
        try:
            request = dataclasses.replace(request, parsed=await self.parser.parse(request.sent))
        finally:
            self.parsing -= 1
        if self.task is None or self.task.done():
            self.queue, self.task = asyncio.Queue(), asyncio.create_task(self.run())
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((request, future))
        result = await future
        if isinstance(result, UnknownMailboxId):
            raise result
        return result

    async def next_batch(self) -> list:
        """What is waiting, and the messages being parsed meanwhile (for at most LINGER_SECONDS): a batch's
        cost is mostly its round trips and its commit, whatever its size."""
        batch = [await self.queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LINGER_SECONDS
        while len(batch) < self.config.batch_size:
            if not self.queue.empty():
                batch.append(self.queue.get_nowait())
                continue
            if not self.parsing or loop.time() >= deadline:
                break
            try:
                async with asyncio.timeout_at(deadline):
                    batch.append(await self.queue.get())
            except TimeoutError:
                break
        return batch

    def store_now(self, requests: list[MailRequest]) -> list:
        with self.pools.operation_connection() as conn:
            return create_from_mails(conn, self.config, requests)

    async def run(self) -> None:
        while True:
            batch = await self.next_batch()
            try:
                results = await asyncio.to_thread(self.store_now, [request for request, _ in batch])
            except Exception as exc:          # every waiting request gets the error; the batcher goes on
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results):
                if not future.done():
                    future.set_result(result)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        self.parser.close()
