"""The intake's worker processes (ticketing.intake.worker_pool), real processes from the fork server: calls and
their answers, exceptions raised in the worker, a worker that dies, and closing one."""
from __future__ import annotations

import asyncio
import os
import time

import pytest

from ticketing.intake.worker_pool import UnpicklableError, WorkerDied, WorkerProcess


class Unpicklable(Exception):
    def __init__(self, lock):
        super().__init__('holds a lock')
        self.lock = lock


def raise_unpicklable() -> None:
    import threading
    raise Unpicklable(threading.Lock())


def echo(*args):
    return os.getpid(), args


def worker() -> WorkerProcess:
    return WorkerProcess(['ticketing.intake.worker_pool'])


def test_a_call_runs_in_another_process_and_its_answer_comes_back():
    async def calls():
        process = worker()
        try:
            first = await process.run(echo, b'x' * 3_000_000, 'two')
            second = await process.run(echo, 3)
            return first, second
        finally:
            process.close()
    (pid, args), (pid_again, more) = asyncio.run(calls())
    assert pid != os.getpid() and pid == pid_again, 'one worker, not this process, answers every call'
    assert args == (b'x' * 3_000_000, 'two') and more == (3,)


def test_what_the_worker_raises_is_raised_here_and_the_worker_goes_on():
    async def calls():
        process = worker()
        try:
            with pytest.raises(ValueError, match='invalid literal'):
                await process.run(int, 'x')
            with pytest.raises(UnpicklableError, match='Unpicklable: holds a lock'):
                await process.run(raise_unpicklable)
            return await process.run(echo, 'after')
        finally:
            process.close()
    assert asyncio.run(calls())[1] == ('after',)


def test_a_worker_that_dies_fails_its_call_and_the_next_call_gets_a_new_one():
    async def calls():
        process = worker()
        try:
            pid, _ = await process.run(echo)
            with pytest.raises(WorkerDied):
                await process.run(os._exit, 70)
            new_pid, _ = await process.run(echo)
            return pid, new_pid
        finally:
            process.close()
    pid, new_pid = asyncio.run(calls())
    assert new_pid != pid


def test_a_closed_worker_process_ends():
    async def start():
        process = worker()
        pid, _ = await process.run(echo)
        process.close()
        return pid
    pid = asyncio.run(start())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.05)
    assert not alive(pid)


def alive(pid: int) -> bool:
    try:
        with open('/proc/%d/stat' % pid) as stat:
            return stat.read().split(') ')[1][0] != 'Z'
    except FileNotFoundError:
        return False
