"""Worker processes for a long-running server (the HTTP API's CreateTicketFromMailData, which parses and stores its
messages in them): work runs on other cores than the event loop, and outside its interpreter lock.

The workers are started by a fork server (the server process has threads: forking it would copy locks that
another thread holds), with the modules they need loaded once in the fork server. A server killed outright takes
its workers with it (parse_ahead.exit_with, which every worker's initializer calls first), and the fork server
then ends too. A worker that dies (a hard crash, not an exception) breaks its pool: every call running in it
raises BrokenProcessPool, and the next call starts a new pool.
"""
from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from .parse_ahead import exit_with

log = logging.getLogger(__name__)


class WorkersUnavailable(Exception):
    """No worker process can be started (the fork server cannot run, no more processes...)."""


def start_worker(parent_pid: int, initializer: Callable | None, initargs: tuple) -> None:
    """A worker's start: it ends with `parent_pid`, then runs the pool's own initializer."""
    exit_with(parent_pid)
    if initializer is not None:
        initializer(*initargs)


class WorkerPool:
    def __init__(self, workers: int, preload: list[str], initializer: Callable | None = None,
                 initargs: tuple = ()):
        self.workers, self.preload = workers, preload
        self.initializer, self.initargs = initializer, initargs
        self.pool: ProcessPoolExecutor | None = None
        self.making = threading.Lock()             # warm() makes the pool in a thread

    def executor(self) -> ProcessPoolExecutor:
        with self.making:
            if self.pool is None:
                context = multiprocessing.get_context('forkserver')
                context.set_forkserver_preload(self.preload)
                self.pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=start_worker,
                                                initargs=(os.getpid(), self.initializer, self.initargs))
            return self.pool

    def submit(self, function: Callable, *args):
        """The pool and the concurrent future of `function(*args)` in one of its workers. Raises BrokenProcessPool
        (the pool is replaced) or WorkersUnavailable."""
        try:
            pool = self.executor()
        except (OSError, RuntimeError) as exc:
            raise WorkersUnavailable(str(exc)) from exc
        try:
            return pool, pool.submit(function, *args)
        except BrokenProcessPool:
            self.replace(pool)
            raise
        except (OSError, RuntimeError) as exc:
            raise WorkersUnavailable(str(exc)) from exc

    async def run(self, function: Callable, *args):
        """`function(*args)` in a worker. Raises what it raised, BrokenProcessPool when a worker of its pool died
        meanwhile (the pool is replaced), or WorkersUnavailable."""
        pool, future = self.submit(function, *args)
        try:
            return await asyncio.wrap_future(future)
        except BrokenProcessPool:
            self.replace(pool)
            raise

    def replace(self, broken: ProcessPoolExecutor) -> None:
        """A new pool for the next calls (once per broken pool, whoever notices first)."""
        with self.making:
            if self.pool is broken:
                log.error('a worker process died; starting new ones')
                broken.shutdown(wait=False, cancel_futures=True)
                self.pool = None

    def warm(self, function: Callable, *args) -> None:
        """Start every worker now, each running `function(*args)` once, rather than at the first call (blocks
        while they start: call it in a thread)."""
        for _, future in [self.submit(function, *args) for _ in range(self.workers)]:
            future.result()

    def close(self) -> None:
        with self.making:
            if self.pool is not None:
                self.pool.shutdown(wait=False, cancel_futures=True)
                self.pool = None
