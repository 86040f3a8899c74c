"""Worker processes for a long-running server (the HTTP API's CreateTicketFromMailData, which parses and stores its
messages in them): work runs on other cores than the event loop, and outside its interpreter lock.

Each `WorkerProcess` is one process that runs calls one at a time. A call and its answer cross a socket pair as
length-prefixed pickles, written and read by the event loop itself: no thread stands between the loop and the
worker (a thread handing a result on must first win the interpreter lock from a busy loop, which cost a couple
of milliseconds per call under load).

The workers are started by a fork server (the server process has threads: forking it would copy locks that
another thread holds), with the modules they need loaded once in the fork server. A worker ends when its socket
closes or when the server process ends, even killed outright (parse_ahead.exit_with). A worker that dies (a hard
crash, not an exception) fails the call it was running with WorkerDied, and the next call starts a new worker.
"""
from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import pickle
import socket
import struct
from collections.abc import Callable

from .parse_ahead import exit_with

log = logging.getLogger(__name__)
FRAME = struct.Struct('!Q')          # the length of the pickle that follows


class WorkersUnavailable(Exception):
    """No worker process can be started (the fork server cannot run, no more processes...)."""


class WorkerDied(Exception):
    """The worker process ended (a hard crash) before it answered the call."""


class UnpicklableError(Exception):
    """What a worker raised could not cross back as it was: its type and text."""


# ------------------------------------------------------------------------------------------ the worker's side

def serve_calls(sock: socket.socket, parent_pid: int, initializer: Callable | None, initargs: tuple) -> None:
    """A worker's life: it ends with `parent_pid`, runs the initializer, then answers calls until its socket
    closes. Each answer is (True, the result) or (False, the exception raised)."""
    exit_with(parent_pid)
    if initializer is not None:
        initializer(*initargs)
    incoming = sock.makefile('rb')
    while True:
        call = read_frame(incoming)
        if call is None:
            return
        try:
            function, args = pickle.loads(call)
            answer = (True, function(*args))
        except Exception as exc:
            answer = (False, exc)
        sock.sendall(framed(answer))


def read_frame(incoming) -> bytes | None:
    """The next pickle from the server, or None when its socket closed."""
    header = incoming.read(FRAME.size)
    if len(header) < FRAME.size:
        return None
    size, = FRAME.unpack(header)
    body = incoming.read(size)
    return body if len(body) == size else None


def framed(answer: tuple) -> bytes:
    try:
        body = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:                      # an exception that does not pickle: its type and text do
        error = answer[1] if not answer[0] else TypeError('the result cannot be pickled')
        body = pickle.dumps((False, UnpicklableError('%s: %s' % (type(error).__name__, error))))
    return FRAME.pack(len(body)) + body


# ------------------------------------------------------------------------------------------ the server's side

class WorkerProcess:
    def __init__(self, preload: list[str], initializer: Callable | None = None, initargs: tuple = ()):
        self.preload, self.initializer, self.initargs = preload, initializer, initargs
        self.process: multiprocessing.Process | None = None
        self.sock: socket.socket | None = None     # the server's end of the worker's socket pair
        self.turn = asyncio.Lock()                 # one call at a time

    async def run(self, function: Callable, *args):
        """`function(*args)` in the worker. Raises what it raised, WorkerDied when the worker died meanwhile (the
        next call starts a new one), or WorkersUnavailable."""
        async with self.turn:
            sock = self.sock or await self.start()
            loop = asyncio.get_running_loop()
            try:
                call = pickle.dumps((function, args), protocol=pickle.HIGHEST_PROTOCOL)
                await loop.sock_sendall(sock, FRAME.pack(len(call)))
                await loop.sock_sendall(sock, call)
                size, = FRAME.unpack(await received(loop, sock, FRAME.size))
                succeeded, value = pickle.loads(await received(loop, sock, size))
            except (OSError, EOFError) as exc:
                log.error('an intake worker process died; the next call starts a new one')
                self.lost()
                raise WorkerDied('the worker process died: %s' % (exc or type(exc).__name__)) from None
            except BaseException:              # cancelled mid-call: the stream is out of step; a new worker next
                self.lost()
                raise
        if succeeded:
            return value
        raise value

    async def start(self) -> socket.socket:
        try:
            self.process, self.sock = await asyncio.to_thread(self.start_process)
        except (OSError, RuntimeError, ValueError) as exc:
            raise WorkersUnavailable(str(exc) or type(exc).__name__) from exc
        self.sock.setblocking(False)
        return self.sock

    def start_process(self) -> tuple[multiprocessing.Process, socket.socket]:
        """A new worker from the fork server, and the server's end of its socket (blocks: call it in a thread)."""
        context = multiprocessing.get_context('forkserver')
        context.set_forkserver_preload(self.preload)
        ours, theirs = socket.socketpair()
        try:
            process = context.Process(target=serve_calls, name='postdesk-api-intake', daemon=True,
                                      args=(theirs, os.getpid(), self.initializer, self.initargs))
            process.start()
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        return process, ours

    def lost(self) -> None:
        """Forget the worker (it died, or a call to it was cut off: it ends when it finds its socket closed);
        the next call starts a new one."""
        if self.sock is not None:
            self.sock.close()
        self.sock, self.process = None, None

    def close(self) -> None:
        """Close the worker's socket: it ends once it has answered the call it is running; an idle one is
        stopped at once (a process forked from the server meanwhile may hold a copy of the socket)."""
        process = self.process
        self.lost()
        if process is not None and not self.turn.locked():
            try:
                process.terminate()
            except (OSError, ValueError):       # ended already
                pass


async def received(loop: asyncio.AbstractEventLoop, sock: socket.socket, size: int) -> bytearray:
    """Exactly `size` bytes from the worker, read into one buffer (the loop's socket calls write into it in place:
    a stream's buffer would copy a large answer again at each read). EOFError when the worker's end closed."""
    buffer = bytearray(size)
    view, done = memoryview(buffer), 0
    while done < size:
        count = await loop.sock_recv_into(sock, view[done:])
        if not count:
            raise EOFError('the worker closed its socket')
        done += count
    return buffer
