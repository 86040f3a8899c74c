"""The HTTP server of `postdesk serve`: uvicorn's `Server` run as a task on serve's own asyncio loop, beside the
SMTP and LMTP listeners, with its signal handling left to postdesk. serve binds the socket (and logs the address
it got, as the listeners do), and at SIGTERM asks uvicorn to stop: no new connections, requests in flight may
finish within shutdown_grace; an operation already running in its thread when the grace ends still finishes
and answers (at most FINISH_SECONDS more), then the pools close.

A request's head (its line and headers) is bounded at MAX_HEAD_BYTES, as nginx and Apache bound theirs:
httptools itself sets no limit, so without one a client could send headers without end. Beyond it the answer
is 431 (RFC 6585) as JSON, and the connection is closed.
"""
from __future__ import annotations

import asyncio
import contextlib
import http
import json
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..config import Config
from ..formats.superoffice import error_json
from ..operations.agents import server_key
from ..store import events
from ..store.db import connect
from ..store.pool import Pools
from .admission import Admission, Turn, admitted
from .app import BODY_METHODS, ApiState, create_app

log = logging.getLogger('postdesk.serve')
STARTUP_SECONDS = 30
FINISH_SECONDS = 30
WARM_SECONDS = 10          # the intake workers may take so long to start before the server says it listens
MAX_HEAD_BYTES = 64 * 1024


class HeadTooLarge(Exception):
    """The request line and headers are longer than MAX_HEAD_BYTES."""


class BoundedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with the request head bounded, and its parse errors answered as JSON."""

    head_bytes = 0

    def on_message_begin(self) -> None:
        self.head_bytes = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self.count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.count_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def count_head(self, size: int) -> None:
        self.head_bytes += size
        if self.head_bytes > MAX_HEAD_BYTES:
            raise HeadTooLarge()

    def data_received(self, data: bytes) -> None:
        # As uvicorn's own, but for the answer to a head it cannot parse (uvicorn's is text/plain).
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, HeadTooLarge) or self.head_bytes > MAX_HEAD_BYTES:
                self.refuse(431, 'RequestHeaderFieldsTooLarge',
                            'the request line and headers are longer than %d bytes' % MAX_HEAD_BYTES)
            else:
                self.refuse(400, 'BadRequest', 'invalid HTTP request')
        except httptools.HttpParserUpgrade:
            self._unsupported_upgrade_warning()

    def refuse(self, status: int, kind: str, message: str) -> None:
        body = json.dumps(error_json(status, kind, message)).encode()
        reason = http.HTTPStatus(status).phrase.encode()
        self.transport.write(b'HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n'
                             b'connection: close\r\n\r\n%s' % (status, reason, len(body), body))
        self.transport.close()


class AdmittedHttpTools(BoundedHttpTools):
    """The protocol with its requests started in the server's admission (admission.Admission): at most so many
    run at once, the others wait, parsed, until there is room. A request with a body starts at once, without a
    turn, to read it (the guard takes its turn then)."""

    def _start_asgi_task(self, cycle, app) -> None:
        if cycle.scope['method'] in BODY_METHODS:
            super()._start_asgi_task(cycle, admitted(app, Turn(self.config.admission, held=False)))
        else:
            self.config.admission.enter(lambda: self._start_admitted(cycle, app))

    def _start_admitted(self, cycle, app) -> bool:
        if self.transport.is_closing():
            return False
        super()._start_asgi_task(cycle, admitted(app, Turn(self.config.admission)))
        return True


class EmbeddedServer(uvicorn.Server):
    """uvicorn's server without its own signal handlers: postdesk's SIGTERM handler stops it."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


@dataclass
class ApiServer:
    server: EmbeddedServer
    task: asyncio.Task
    pools: Pools
    address: str
    listeners: list[asyncio.Task]

    @property
    def admission(self) -> Admission:
        return self.server.config.admission

    async def stop(self) -> None:
        """Stop accepting; requests in flight finish within the grace period (uvicorn's graceful shutdown), and
        long polls answer at once."""
        self.server.should_exit = True
        self.admission.hurry()
        await self.server.config.app.state.api.bayeux.close()
        try:
            await self.task
            await finish_requests(self.server)
        finally:
            for listener in self.listeners:
                listener.cancel()
            await asyncio.gather(*self.listeners, return_exceptions=True)
            await self.server.config.app.state.api.mail_intake.close()
            await self.pools.close()


async def finish_requests(server: EmbeddedServer) -> None:
    """Wait for the requests uvicorn cancelled at the end of the grace that are finishing an operation."""
    running = set(server.server_state.tasks)
    if running:
        await asyncio.wait(running, timeout=FINISH_SECONDS)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ':' in host else socket.AF_INET
    # IPPROTO_TCP named, so that asyncio sets TCP_NODELAY on every accepted connection (it checks the protocol):
    # without it, a keep-alive connection's next response waits 40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def warm_intake(intake) -> None:
    """Start CreateTicketFromMailData's workers in the background (otherwise the first message waits)."""
    try:
        await intake.warm()
    except Exception as exc:          # the first message starts them again, and says why they cannot start
        log.warning('the intake workers did not start: %s', exc)


def token_key(config: Config) -> str:
    if config.api_token_key:
        return config.api_token_key
    with connect(config.database_url, autocommit=True) as conn:
        return server_key(conn)


def uvicorn_config(app, config: Config, admission: Admission | None = None) -> uvicorn.Config:
    settings = uvicorn.Config(app, http=AdmittedHttpTools, lifespan='off', log_config=None, access_log=False,
                              proxy_headers=False, server_header=False, ws='none',
                              timeout_graceful_shutdown=config.shutdown_grace, timeout_keep_alive=30, backlog=2048)
    settings.admission = admission or Admission()
    return settings


async def start_api(config: Config, host: str, port: int,
                    mail_active: Callable[[], bool] = lambda: False) -> ApiServer:
    """Bind, start the server task and wait until it serves, and until CreateTicketFromMailData's workers have
    started (a server that says it listens answers its first messages without waiting for them); fewer requests
    run at once while `mail_active()` (admission). Raises OSError when the address cannot be bound."""
    sock = bind(host, port)
    pools = Pools(config.database_url, config.http_pool_size, config.database_timeout)
    await pools.open()
    app = create_app(ApiState(config, pools, await asyncio.to_thread(token_key, config)))
    cache, bell = app.state.api.agent_cache, app.state.api.bayeux.bell
    listeners = [asyncio.create_task(events.listen_forever(config.database_url, events.AGENTS_CHANNEL, cache.changed,
                                                           cache.lost)),
                 asyncio.create_task(events.listen_forever(config.database_url, events.EVENT_CHANNEL, bell.ring,
                                                           bell.ring))]
    warming = asyncio.create_task(warm_intake(app.state.api.mail_intake))
    listeners.append(warming)
    server = EmbeddedServer(uvicorn_config(app, config, Admission(mail_active=mail_active)))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(STARTUP_SECONDS * 20):
        if server.started or task.done():
            break
        await asyncio.sleep(0.05)
    if task.done():
        for listener in listeners:
            listener.cancel()
        await pools.close()
        task.result()
    await asyncio.wait([warming], timeout=WARM_SECONDS)     # serving at full speed once it says it listens
    bound = sock.getsockname()
    address = '%s:%d' % (bound[0], bound[1])
    log.info('HTTP listening on %s (max %d bytes per request body, %d database connections)', address,
             config.http_body_limit(), config.http_pool_size)
    return ApiServer(server, task, pools, address, listeners)
