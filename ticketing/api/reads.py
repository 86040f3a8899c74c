"""Reads asked for concurrently, answered together: requests for the same kind of row (a ticket by id) that
arrive while such a read is running wait for the next one, which fetches all of them in one statement, as the
spool writer shares commits. One request alone is read at once (one turn of the event loop later).

A read starts after every request it answers arrived, so each request sees every change committed before it
was sent. Requests of agents with different scopes are read in statements of their own.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable

from ..store.pool import Pools

MAX_BATCH = 100
MAX_RUNNING = 2

ReadMany = Callable[..., Awaitable[dict]]


class Coalesced:
    """`await get(key, scope)`: the row `read_many(conn, keys, scope)` finds for key, or None."""

    def __init__(self, pools: Pools, read_many: ReadMany, max_batch: int = MAX_BATCH,
                 max_running: int = MAX_RUNNING):
        self.pools, self.read_many = pools, read_many
        self.max_batch, self.max_running = max_batch, max_running
        self.waiting: dict[Hashable, dict[Hashable, list[asyncio.Future]]] = {}
        self.running = 0
        self.scheduled = False

    async def get(self, key: Hashable, scope: list[int] | None):
        future = asyncio.get_running_loop().create_future()
        group = None if scope is None else tuple(scope)
        self.waiting.setdefault(group, {}).setdefault(key, []).append(future)
        self.schedule()
        return await future

    def schedule(self) -> None:
        """Start a read on the loop's next turn (so that requests of this turn join it), unless enough run."""
        if not self.scheduled and self.running < self.max_running and self.waiting:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self.start)

    def start(self) -> None:
        self.scheduled = False
        if self.running >= self.max_running or not self.waiting:
            return
        group = next(iter(self.waiting))
        keys = self.waiting[group]
        if len(keys) <= self.max_batch:
            taken = self.waiting.pop(group)
        else:
            taken = {key: keys.pop(key) for key in list(keys)[:self.max_batch]}
        self.running += 1
        asyncio.ensure_future(self.read(taken, group))

    async def read(self, taken: dict[Hashable, list[asyncio.Future]], group: tuple | None) -> None:
        try:
            found = await self.pools.read(self.read_many, list(taken), None if group is None else list(group))
        except Exception as exc:              # every request of the read gets the error
            settle(taken, exception=exc)
        except asyncio.CancelledError:
            settle(taken, cancelled=True)
            raise
        else:
            settle(taken, found=found)
        finally:
            self.running -= 1
            self.schedule()


def settle(taken: dict[Hashable, list[asyncio.Future]], found: dict | None = None,
           exception: Exception | None = None, cancelled: bool = False) -> None:
    for key, futures in taken.items():
        for future in futures:
            if future.done():
                continue
            if cancelled:
                future.cancel()
            elif exception is not None:
                future.set_exception(exception)
            else:
                future.set_result(found.get(key))
