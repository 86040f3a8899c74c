"""Parsing ahead of storing: while the intake writes one batch to PostgreSQL, a worker process parses the next.

Parsing (CPU in Python) and writing (mostly waiting for the database) then overlap on a 2-core machine instead
of adding up. The worker starts only when a second batch exists, so a replay of a few files never pays for it;
at most two batches are in flight, so memory stays flat whatever the size of the input. The worker is forked
(it needs nothing but the ingest package already loaded, and never touches the parent's database connection);
if it dies, the batches are parsed in this process instead and the run goes on.
"""
from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import select
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from ingest import NotAMessage, ParsedMail, ParseLimits, parse_message

from ..model import SourceMessage

log = logging.getLogger(__name__)
# For tests only: with POSTDESK_TEST_CRASH_MARKER set, parsing a message that contains the marker kills the process
# at once, as a crash in C code would (tests/test_poison.py). Never set in production.
PARSE_WORKERS = 2 if (os.cpu_count() or 1) >= 2 else 1
_CRASH_MARKER = os.environ.get('POSTDESK_TEST_CRASH_MARKER', '').encode() or None


@dataclass(frozen=True)
class ParseResult:
    parsed: ParsedMail | None
    reason: str | None          # why it is not a message, when it is not


def parse_raw(raw: bytes, limits: ParseLimits) -> ParseResult:
    if _CRASH_MARKER is not None and _CRASH_MARKER in raw:
        os._exit(70)
    try:
        return ParseResult(parse_message(raw, limits), None)
    except NotAMessage as exc:
        return ParseResult(None, 'not a message: %s' % exc)


def exit_with(parent_pid: int) -> None:
    """A pool worker's initializer: the worker ends when `parent_pid` ends. A pool's owner that is killed
    outright cannot stop its workers, and they would wait on their queue for ever (each holds both ends of it)."""
    try:
        watched = os.pidfd_open(parent_pid)
    except ProcessLookupError:
        os._exit(0)
    except (AttributeError, OSError):         # no pidfd here: the pool's owner stops its workers itself
        return

    def watch() -> None:
        select.select([watched], [], [])
        os._exit(0)
    threading.Thread(target=watch, name='exit-with-parent', daemon=True).start()


def parse_batch(raws: list[bytes], limits: ParseLimits) -> list[ParseResult]:
    return [parse_raw(raw, limits) for raw in raws]


def _inline(batch: list[SourceMessage], limits: ParseLimits) -> tuple[list[SourceMessage], list[ParseResult]]:
    return batch, parse_batch([m.sent for m in batch], limits)


def parsed_batches(batches: Iterable[list[SourceMessage]],
                   limits: ParseLimits) -> Iterator[tuple[list[SourceMessage], list[ParseResult]]]:
    """Each batch with its parse results, in order; from the second batch on, parsed by a worker process."""
    iterator = iter(batches)
    first = next(iterator, None)
    if first is None:
        return
    second = next(iterator, None)
    if second is None or 'fork' not in multiprocessing.get_all_start_methods():
        for batch in (first, second) if second is not None else (first,):
            yield _inline(batch, limits)
        for batch in iterator:
            yield _inline(batch, limits)
        return
    with ProcessPoolExecutor(max_workers=PARSE_WORKERS, mp_context=multiprocessing.get_context('fork'),
                             initializer=exit_with, initargs=(os.getpid(),)) as pool:
        yield from _pipelined(pool, first, second, iterator, limits)


def _pipelined(pool: ProcessPoolExecutor, first, second, iterator, limits: ParseLimits):
    """Keep PARSE_WORKERS + 1 batches submitted ahead of the one being stored, so no worker waits for work."""
    pending = deque([(second, pool.submit(parse_batch, [m.sent for m in second], limits))])
    for batch in itertools.islice(iterator, PARSE_WORKERS):
        pending.append((batch, pool.submit(parse_batch, [m.sent for m in batch], limits)))
    yield _inline(first, limits)
    broken = False
    for batch in iterator:
        if broken:
            pending.append((batch, None))
        else:
            pending.append((batch, pool.submit(parse_batch, [m.sent for m in batch], limits)))
        done, results, broken = _collect(pending.popleft(), limits, broken)
        yield done, results
    while pending:
        done, results, broken = _collect(pending.popleft(), limits, broken)
        yield done, results


def _collect(entry, limits: ParseLimits, broken: bool):
    batch, future = entry
    if future is not None:
        try:
            return batch, future.result(), broken
        except BrokenProcessPool:
            log.error('the parse worker died; parsing in this process from now on')
            broken = True
    return batch, parse_batch([m.sent for m in batch], limits), broken
