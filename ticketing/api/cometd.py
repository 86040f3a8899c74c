"""A CometD server (the Bayeux protocol 1.0, long polling) for the agents' notifications (Genesys, seed 001):
`/meta/handshake`, `/meta/connect`, `/meta/subscribe`, `/meta/unsubscribe`, `/meta/disconnect`, and the channels
`/v2/me/interactions` and `/v2/me/workbins` (`/v2/me/*` and `/v2/me/**` name both).

Nothing is kept in the process: a client's session (its agent, subscriptions and the last event it was given)
is a row, and events are rows committed with the changes they report (see `ticketing.store.events`). A connect
returns at once with the events after the session's last one, or waits for the bell (a NOTIFY, rung by any
process) up to the long-poll time. So a client may reconnect to any `postdesk serve` process, and one that comes
back within the session's lifetime gets what it missed, in order, once. No Python CometD server is maintained;
this one is small on purpose, and tested against clients written by others.
"""
from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..formats.genesys import INTERACTIONS_CHANNEL, WORKBINS_CHANNEL
from ..model import Agent
from ..store import events, work

HANDSHAKE, CONNECT, SUBSCRIBE = '/meta/handshake', '/meta/connect', '/meta/subscribe'
UNSUBSCRIBE, DISCONNECT = '/meta/unsubscribe', '/meta/disconnect'
LONG_POLLING = 'long-polling'
CHANNELS = (INTERACTIONS_CHANNEL, WORKBINS_CHANNEL)
WILDCARDS = ('/v2/me/*', '/v2/me/**')
RECHECK_SECONDS = 5.0            # a connect looks at the table this often even when no bell rings
CLIENT_ID = re.compile(r'[A-Za-z0-9_-]{1,64}')      # what handshake hands out (anything else is unknown)

Run = Callable[[Callable], Awaitable]       # runs a function of a database connection, off the event loop


@dataclass(frozen=True)
class BayeuxSettings:
    long_poll: float = 25.0          # seconds a connect waits for events
    session_ttl: float = 120.0       # seconds a session lives after its last connect


class Bell:
    """Wakes the connects waiting in this process when an event may have been committed (by any process)."""

    def __init__(self):
        self._condition = asyncio.Condition()

    async def ring(self) -> None:
        async with self._condition:
            self._condition.notify_all()

    async def wait(self, timeout: float) -> None:
        async with self._condition:
            try:
                await asyncio.wait_for(self._condition.wait(), timeout)
            except asyncio.TimeoutError:
                pass


def reply(message: dict, successful: bool = True, **fields) -> dict:
    answer = {'channel': message.get('channel'), 'successful': successful}
    if 'id' in message:
        answer['id'] = message['id']
    if message.get('clientId'):
        answer['clientId'] = message['clientId']
    answer.update(fields)
    return answer


def channels_named(subscription) -> list[str] | None:
    """The channels a subscription names; None when it names one that does not exist."""
    names = subscription if isinstance(subscription, list) else [subscription]
    found: list[str] = []
    for name in names:
        if name in WILDCARDS:
            found.extend(CHANNELS)
        elif name in CHANNELS:
            found.append(name)
        else:
            return None
    return found


class Bayeux:
    """Answers the messages of one Bayeux request for an authenticated agent."""

    def __init__(self, run: Run, bell: Bell, settings: BayeuxSettings):
        self.run, self.bell, self.settings = run, bell, settings
        self.first_connects: set[str] = set()
        self.closing = False

    async def close(self) -> None:
        """The server is stopping: connects waiting now answer at once (their clients reconnect elsewhere)."""
        self.closing = True
        await self.bell.ring()

    def advice(self, reconnect: str = 'retry', timeout: float | None = None) -> dict:
        return {'reconnect': reconnect, 'interval': 0,
                'timeout': int((self.settings.long_poll if timeout is None else timeout) * 1000)}

    async def handle(self, agent: Agent, messages: list) -> list[dict]:
        """The answers, in the order the messages came; a connect's events come before its answer."""
        answers: list[dict] = []
        for message in messages:
            if not isinstance(message, dict):
                answers.append({'successful': False, 'error': '400::not a Bayeux message'})
                continue
            answers.extend(await self.answer(agent, message))
        return answers

    async def answer(self, agent: Agent, message: dict) -> list[dict]:
        channel = message.get('channel')
        if channel == HANDSHAKE:
            return [await self.handshake(agent, message)]
        session = await self.session(agent, message.get('clientId'))
        if session is None:
            return [reply(message, False, error='402::Unknown client', advice=self.advice('handshake', 0))]
        if channel == CONNECT:
            return await self.connect(agent, message, session)
        if channel in (SUBSCRIBE, UNSUBSCRIBE):
            return [await self.subscription(message, session, channel == SUBSCRIBE)]
        if channel == DISCONNECT:
            await self.run(lambda conn: events.close_session(conn, message['clientId']))
            return [reply(message)]
        return [reply(message, False, error='403:%s:publishing is not allowed' % channel)]

    async def handshake(self, agent: Agent, message: dict) -> dict:
        types = message.get('supportedConnectionTypes') or [LONG_POLLING]
        if not isinstance(types, list) or not all(isinstance(name, str) for name in types):
            return reply(message, False, error='400::supportedConnectionTypes is a list of names',
                         supportedConnectionTypes=[LONG_POLLING], advice=self.advice('none'))
        if LONG_POLLING not in types:
            return reply(message, False, error='301:%s:long-polling is the connection type here' % ','.join(
                map(str, types)), supportedConnectionTypes=[LONG_POLLING], advice=self.advice('none'))
        client_id = secrets.token_urlsafe(18)
        await self.run(lambda conn: events.open_session(conn, client_id, agent.agent_id))
        self.first_connects.add(client_id)
        return reply(message, clientId=client_id, version='1.0', supportedConnectionTypes=[LONG_POLLING],
                     advice=self.advice())

    async def session(self, agent: Agent, client_id) -> tuple[int, list[str], int] | None:
        if not isinstance(client_id, str) or not CLIENT_ID.fullmatch(client_id):
            return None
        found = await self.run(lambda conn: events.session_of(conn, client_id, self.settings.session_ttl))
        return found if found is not None and found[0] == agent.agent_id else None

    async def subscription(self, message: dict, session, subscribe: bool) -> dict:
        named = channels_named(message.get('subscription'))
        if named is None:
            return reply(message, False, subscription=message.get('subscription'),
                         error='403:%s:no such channel' % message.get('subscription'))
        current = set(session[1])
        current = current | set(named) if subscribe else current - set(named)
        await self.run(lambda conn: events.set_subscriptions(conn, message['clientId'], sorted(current)))
        await self.bell.ring()              # a connect waiting in this process looks again, with the new channels
        return reply(message, subscription=message.get('subscription'))

    async def connect(self, agent: Agent, message: dict, session) -> list[dict]:
        client_id = message['clientId']
        first = client_id in self.first_connects
        self.first_connects.discard(client_id)
        found = await self.wait_for_events(agent, client_id, 0 if first else self.settings.long_poll)
        delivered = [{'channel': e.channel, 'data': e.data, 'id': str(e.event_id)} for e in found]
        return delivered + [reply(message, advice=self.advice())]

    async def wait_for_events(self, agent: Agent, client_id: str, wait: float) -> list:
        deadline = time.monotonic() + wait
        while True:
            found = await self.run(lambda conn: self.take_events(conn, agent, client_id))
            remaining = deadline - time.monotonic()
            if found or remaining <= 0 or self.closing:
                return found
            await self.bell.wait(min(remaining, RECHECK_SECONDS))

    @staticmethod
    def take_events(conn, agent: Agent, client_id: str) -> list:
        """The events after the session's last, which the session has now been given (and the agent is seen)."""
        with conn.transaction():
            work.mark_seen(conn, agent.agent_id)
            found = events.events_for_session(conn, client_id)
            if found:
                events.advance_session(conn, client_id, found[-1].event_id)
        return found
