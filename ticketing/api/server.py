"""The HTTP server of `postdesk serve`: uvicorn's `Server` run as a task on serve's own asyncio loop, beside the
SMTP and LMTP listeners, with its signal handling left to postdesk. serve binds the socket (and logs the address
it got, as the listeners do), and at SIGTERM asks uvicorn to stop: no new connections, requests in flight may
finish within shutdown_grace, then the pools close.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from dataclasses import dataclass

import uvicorn

from ..config import Config
from ..operations.agents import server_key
from ..store import events
from ..store.db import connect
from ..store.pool import Pools
from .app import ApiState, create_app

log = logging.getLogger('postdesk.serve')
STARTUP_SECONDS = 30


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

    async def stop(self) -> None:
        """Stop accepting; requests in flight finish within the grace period (uvicorn's graceful shutdown), and
        long polls answer at once."""
        self.server.should_exit = True
        await self.server.config.app.state.api.bayeux.close()
        try:
            await self.task
        finally:
            for listener in self.listeners:
                listener.cancel()
            await asyncio.gather(*self.listeners, return_exceptions=True)
            await self.server.config.app.state.api.mail_intake.close()
            await self.pools.close()


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


def token_key(config: Config) -> str:
    if config.api_token_key:
        return config.api_token_key
    with connect(config.database_url, autocommit=True) as conn:
        return server_key(conn)


def uvicorn_config(app, config: Config) -> uvicorn.Config:
    return uvicorn.Config(app, lifespan='off', log_config=None, access_log=False, proxy_headers=False,
                          server_header=False, ws='none', timeout_graceful_shutdown=config.shutdown_grace,
                          timeout_keep_alive=30, backlog=2048)


async def start_api(config: Config, host: str, port: int) -> ApiServer:
    """Bind, start the server task and wait until it serves. Raises OSError when the address cannot be bound."""
    sock = bind(host, port)
    pools = Pools(config.database_url, config.http_pool_size, config.database_timeout)
    await pools.open()
    app = create_app(ApiState(config, pools, await asyncio.to_thread(token_key, config)))
    cache, bell = app.state.api.agent_cache, app.state.api.bayeux.bell
    listeners = [asyncio.create_task(events.listen_forever(config.database_url, events.AGENTS_CHANNEL, cache.changed,
                                                           cache.lost)),
                 asyncio.create_task(events.listen_forever(config.database_url, events.EVENT_CHANNEL, bell.ring,
                                                           bell.ring))]
    server = EmbeddedServer(uvicorn_config(app, config))
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
    bound = sock.getsockname()
    address = '%s:%d' % (bound[0], bound[1])
    log.info('HTTP listening on %s (max %d bytes per request body, %d database connections)', address,
             config.http_body_limit(), config.http_pool_size)
    return ApiServer(server, task, pools, address, listeners)
