"""Who is asking: `Authorization: Bearer TOKEN`, or `Basic` with the login and either the password or the token
(SuperOffice's documents allow both schemes). A token is checked by its keyed hash in one index probe; a
password by argon2, in a thread, off the event loop. A missing or wrong credential, or one of a disabled agent,
is 401 with `WWW-Authenticate`.

Repeated failures from one address are slowed (each attempt waits longer) and then refused with 429 and
Retry-After until the window has passed; a valid token is accepted all the same (it cannot be guessed), so the
limit falls on guesses and passwords (each attempt still costs the token's index probe, at most one per
connection of the read pool at a time). The count is this process's, kept in memory and bounded. What is not a
valid token is checked one at a time per address, so that a burst of concurrent guesses is counted as it goes
and cannot outrun the limit.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import hmac
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from fastapi import Request

from ..model import Agent
from ..operations.agents import password_matches, token_hash
from ..store import agents
from .app import ApiError, state_of

CHALLENGE = {'WWW-Authenticate': 'Bearer realm="postdesk", Basic realm="postdesk", charset="UTF-8"'}
SLOW_AFTER, REFUSE_AFTER, WINDOW_SECONDS = 5, 10, 60.0
MAX_DELAY_SECONDS = 2.0
MAX_ADDRESSES = 10_000


@dataclass
class Throttle:
    """Failed sign-ins per client address within the last WINDOW_SECONDS."""
    failures: dict[str, collections.deque] = field(default_factory=dict)
    turns: dict[str, tuple[asyncio.Lock, int]] = field(default_factory=dict)

    @contextlib.asynccontextmanager
    async def turn(self, address: str) -> AsyncIterator[None]:
        """Hold the address's turn: one credential check at a time per address."""
        lock, waiting = self.turns.get(address, (None, 0))
        lock = lock or asyncio.Lock()
        self.turns[address] = (lock, waiting + 1)
        try:
            async with lock:
                yield
        finally:
            lock, waiting = self.turns[address]
            if waiting == 1:
                del self.turns[address]
            else:
                self.turns[address] = (lock, waiting - 1)

    def recent(self, address: str, now: float) -> collections.deque:
        seen = self.failures.get(address)
        if seen is None:
            return collections.deque()
        while seen and now - seen[0] > WINDOW_SECONDS:
            seen.popleft()
        return seen

    def delay(self, address: str) -> float:
        """Seconds to make this attempt wait; raises ApiError 429 when the address is refused for now."""
        now = time.monotonic()
        seen = self.recent(address, now)
        if len(seen) >= REFUSE_AFTER:
            retry_after = max(1, int(WINDOW_SECONDS - (now - seen[0])) + 1)
            raise ApiError(429, 'TooManyRequests', 'too many failed sign-ins from %s; try again later' % address,
                           {'Retry-After': str(retry_after)})
        if len(seen) < SLOW_AFTER:
            return 0.0
        return min(MAX_DELAY_SECONDS, 0.05 * 2 ** (len(seen) - SLOW_AFTER))

    def fail(self, address: str) -> None:
        if address not in self.failures and len(self.failures) >= MAX_ADDRESSES:
            self.failures.pop(next(iter(self.failures)))
        self.failures.setdefault(address, collections.deque(maxlen=REFUSE_AFTER)).append(time.monotonic())


def unauthorized(message: str) -> ApiError:
    return ApiError(401, 'Unauthorized', message, CHALLENGE)


def credentials(header: str | None) -> tuple[str, str | None, str] | None:
    """(scheme, login, secret) from an Authorization header; None when there is none. Raises 401 for a header
    that cannot be read."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(' ')
    scheme, value = scheme.lower(), value.strip()
    if scheme == 'bearer' and value:
        return 'bearer', None, value
    if scheme == 'basic':
        try:
            login, sep, secret = base64.b64decode(value, validate=True).decode('utf-8').partition(':')
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise unauthorized('the Basic credential cannot be read') from None
        if sep and login:
            return 'basic', login, secret
    raise unauthorized('use Authorization: Bearer TOKEN, or Basic with a login and a password or token')


@dataclass
class AgentCache:
    """Agents by the keyed hash of their credential, kept only while this process listens to the agents' change
    channel (a trigger announces every change of a login, role, secret, mailbox or the active flag): the cache is
    emptied at every change and whenever the channel is lost, so a new token or a disabled agent takes effect at
    once, and a request with known credentials costs no database round trip and no argon2."""
    entries: dict[bytes, tuple[Agent, float]] = field(default_factory=dict)
    live: bool = False
    ttl: float = 300.0

    def get(self, key: bytes) -> Agent | None:
        found = self.entries.get(key)
        if found is None or not self.live or time.monotonic() > found[1]:
            return None
        return found[0]

    def put(self, key: bytes, agent: Agent) -> None:
        if not self.live:
            return
        if len(self.entries) >= MAX_ADDRESSES:
            self.entries.clear()
        self.entries[key] = (agent, time.monotonic() + self.ttl)

    async def changed(self) -> None:
        self.entries.clear()
        self.live = True

    async def lost(self) -> None:
        self.entries.clear()
        self.live = False


def cache_key(key: str, found: tuple[str, str | None, str]) -> bytes:
    scheme, login, secret = found
    return scheme.encode() + b'\0' + token_hash(key, '%s\0%s' % (login or '', secret))


async def checked_agent(request: Request, found: tuple[str, str | None, str], key: bytes, address: str) -> Agent:
    """Credentials the cache does not know. A valid token is accepted at once, whatever the address's failures
    (a token cannot be guessed, and its check is one index probe), so one guesser behind a shared address does
    not lock out the agents beside it; anything else takes the address's turn, is slowed or refused (429) after
    failures before its password is tried, and is counted when wrong. Raises ApiError 401 or 429."""
    state = state_of(request)
    agent, named = await agent_by_token(request, found)       # outside the turn: it waits for no guesser
    if agent is not None and agent.active:
        state.agent_cache.put(key, agent)
        return agent
    async with state.throttle.turn(address):
        delay = state.throttle.delay(address)
        if delay:
            await asyncio.sleep(delay)
        agent = await agent_by_password(named, found[2])
        if agent is None or not agent.active:
            state.throttle.fail(address)
            raise unauthorized('invalid credentials')
        state.agent_cache.put(key, agent)
        return agent


async def agent_by_token(request: Request, found: tuple[str, str | None, str]
                         ) -> tuple[Agent | None, tuple[Agent, str | None] | None]:
    """The agent whose token the secret is, if any; and for Basic, the agent its login names with its password
    hash (for agent_by_password)."""
    state = state_of(request)
    scheme, login, secret = found
    if scheme == 'bearer':
        return await state.pools.read(agents.agent_by_token, token_hash(state.key, secret)), None
    stored = await state.pools.read(agents.agent_by_login, login)
    if stored is None:
        return None, None
    agent, password_hash, stored_token = stored
    if stored_token is not None and hmac.compare_digest(token_hash(state.key, secret), stored_token):
        return agent, None
    return None, (agent, password_hash)


async def agent_by_password(named: tuple[Agent, str | None] | None, secret: str) -> Agent | None:
    """The agent a Basic login names, when the secret is its password (argon2, in a thread)."""
    if named is None or not named[1]:
        return None
    agent, password_hash = named
    return agent if await asyncio.to_thread(password_matches, password_hash, secret) else None


async def current_agent(request: Request) -> Agent:
    """The agent a request authenticates as (a FastAPI dependency). Raises ApiError 401 or 429."""
    state = state_of(request)
    found = credentials(request.headers.get('authorization'))
    if found is None:
        raise unauthorized('authentication required')
    key = cache_key(state.key, found)
    agent = state.agent_cache.get(key)
    if agent is not None and agent.active:
        return agent
    return await checked_agent(request, found, key, request.client.host if request.client else 'unknown')
