"""Parsing for a long-running server (the HTTP API's CreateTicketFromMailData): each message is parsed in a pool of
worker processes as soon as it arrives, while earlier messages are being stored, so parsing runs on another core
than the event loop and beside the database's work instead of before it.

The workers are started by a fork server (the server process has threads: forking it would copy locks that
another thread holds). A message that crashes its worker (a hard crash, not an exception) costs only that
worker: the messages that were being parsed with it are parsed again, one at a time in a fresh pool, and the one
that crashes again is answered as not parseable, so it is quarantined with that reason; the server goes on. A
server killed outright takes its workers with it (parse_ahead.exit_with), and the fork server then ends too.
"""
from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from ingest import ParseLimits

from .parse_ahead import PARSE_WORKERS, ParseResult, exit_with, parse_raw

log = logging.getLogger(__name__)
CRASHED = 'the parser crashed on it (its worker process died)'


class ParsePool:
    def __init__(self, limits: ParseLimits, workers: int = PARSE_WORKERS):
        self.limits, self.workers = limits, workers
        self.pool: ProcessPoolExecutor | None = None
        self.retrying = asyncio.Lock()
        self.making = threading.Lock()             # warm() makes the pool in a thread

    def executor(self) -> ProcessPoolExecutor:
        with self.making:
            if self.pool is None:
                context = multiprocessing.get_context('forkserver')
                context.set_forkserver_preload(['ingest', 'ticketing.intake.parse_ahead'])
                self.pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=exit_with,
                                                initargs=(os.getpid(),))
            return self.pool

    async def parse(self, raw: bytes) -> ParseResult:
        """The message parsed; a message that crashed the parser twice comes back as not a message. When no
        worker can be started at all, the message is parsed in a thread of this process instead."""
        try:
            return await self.parse_in_pool(raw)
        except (OSError, RuntimeError) as exc:
            log.warning('no parse worker could be started (%s); parsing in this process', exc)
            return await asyncio.to_thread(parse_raw, raw, self.limits)

    async def parse_in_pool(self, raw: bytes) -> ParseResult:
        pool = self.executor()
        try:
            return await self.parsed_by(pool, raw)
        except BrokenProcessPool:
            self.replace(pool)
        async with self.retrying:                  # one at a time: a crash now is this message's own
            pool = self.executor()
            try:
                return await self.parsed_by(pool, raw)
            except BrokenProcessPool:
                log.error('a message crashed the parser twice; it is quarantined')
                self.replace(pool)
                return ParseResult(None, CRASHED)

    async def parsed_by(self, pool: ProcessPoolExecutor, raw: bytes) -> ParseResult:
        return await asyncio.wrap_future(pool.submit(parse_raw, raw, self.limits))

    def replace(self, broken: ProcessPoolExecutor) -> None:
        """A new pool for the next messages (once per broken pool, whoever notices first)."""
        if self.pool is broken:
            log.error('a parse worker died; starting new ones')
            broken.shutdown(wait=False, cancel_futures=True)
            self.pool = None

    def warm(self) -> None:
        """Start the workers now rather than at the first message (blocks while they start: call it in a
        thread)."""
        self.executor().submit(parse_raw, b'Subject: warm\r\n\r\n', self.limits).result()

    def close(self) -> None:
        with self.making:
            if self.pool is not None:
                self.pool.shutdown(wait=False, cancel_futures=True)
                self.pool = None
