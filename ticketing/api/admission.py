"""How many HTTP requests run on the event loop at once.

The loop is shared with the SMTP and LMTP listeners, and each of its turns runs a step of every request in
progress: the more requests at once, the longer a turn. A message's reply waits several turns (its data read,
the session's step, the database's answer, the session's next step), so on a loop busy with many requests the
250 comes late. The server therefore runs at most `limit` requests at once, enough to keep PostgreSQL busy and
read tickets in batches, and while mail is being received (an SMTP or LMTP transaction, from MAIL to the reply
to its DATA) at most `limit_for_mail`, so that each turn is short. The others wait, parsed, in order of arrival,
and cost the loop nothing. A request with a body (POST, PUT, PATCH) starts at once to read it, and takes its turn
once it has it whole: a client that sends its body slowly, or not at all, holds no turn. (A client that reads
its answer slowly holds none either: uvicorn buffers a whole answer and the request ends.)

A request that waits for something other than the loop (an operation in a thread, a batch of intake, a long
poll) gives its turn back meanwhile, and takes one again afterwards, before any request that has not started.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Callable

LIMIT = 8
LIMIT_FOR_MAIL = 1
TURN_KEY = 'postdesk.turn'           # the request's Turn, in its ASGI scope


class Admission:
    """The requests running, and those waiting to start or to go on."""

    def __init__(self, limit: int = LIMIT, limit_for_mail: int = LIMIT_FOR_MAIL,
                 mail_active: Callable[[], bool] = lambda: False):
        self.limit, self.limit_for_mail, self.mail_active = max(1, limit), max(1, limit_for_mail), mail_active
        self.running = 0
        self.starting: collections.deque[Callable[[], bool]] = collections.deque()
        self.resuming: collections.deque[asyncio.Future] = collections.deque()
        self.hurrying = False

    def room(self) -> bool:
        return self.hurrying or self.running < (self.limit_for_mail if self.mail_active() else self.limit)

    def enter(self, start: Callable[[], bool]) -> None:
        """`start()` the request now if there is room, else once there is; start returns False for a request
        whose client has gone meanwhile."""
        self.starting.append(start)
        self.admit()

    def leave(self) -> None:
        self.running -= 1
        self.admit()

    def admit(self) -> None:
        """Let waiting requests go on, those started already first, while there is room."""
        while self.room() and (self.resuming or self.starting):
            if self.resuming:
                future = self.resuming.popleft()
                if not future.done():
                    self.running += 1
                    future.set_result(None)
            else:
                self.running += 1
                if not self.starting.popleft()():
                    self.running -= 1

    def hurry(self) -> None:
        """From now on every request runs at once (at shutdown: each is answered within the grace)."""
        self.hurrying = True
        self.admit()

    async def take_back(self) -> None:
        """Wait for room to go on (a request that gave its turn back)."""
        if self.room() and not self.resuming:
            self.running += 1
            return
        future = asyncio.get_running_loop().create_future()
        self.resuming.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():      # room was given just as the request was cancelled
                self.leave()
            raise


class Turn:
    """One request's place among those running (not held yet by a request started to read its body)."""

    def __init__(self, admission: Admission, held: bool = True):
        self.admission, self.held = admission, held

    async def take(self) -> None:
        if not self.held:
            await self.admission.take_back()
            self.held = True

    def end(self) -> None:
        if self.held:
            self.held = False
            self.admission.leave()

    @contextlib.asynccontextmanager
    async def given_back(self) -> AsyncIterator[None]:
        self.end()
        try:
            yield
        finally:
            await self.take()


def admitted(app, turn: Turn):
    """The ASGI app, run in `turn` (ended whatever happens)."""
    async def run(scope, receive, send):
        scope[TURN_KEY] = turn
        try:
            await app(scope, receive, send)
        finally:
            turn.end()
    return run


async def take_turn(scope: dict) -> None:
    """A request started without a turn takes one (once its body is read)."""
    turn = scope.get(TURN_KEY)
    if turn is not None:
        await turn.take()


def waiting_elsewhere(scope: dict) -> contextlib.AbstractAsyncContextManager:
    """`async with waiting_elsewhere(request.scope):` around a wait that does not use the loop."""
    turn = scope.get(TURN_KEY)
    return turn.given_back() if turn is not None else contextlib.nullcontext()
