"""Parsing ahead of storing: while the intake writes one batch to PostgreSQL, a worker process parses the next.

Parsing (CPU in Python) and writing (mostly waiting for the database) then overlap on a 2-core machine instead
of adding up. The worker starts only when a second batch exists, so a replay of a few files never pays for it;
at most two batches are in flight, so memory stays flat whatever the size of the input.
"""
from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from ingest import NotAMessage, ParsedMail, ParseLimits, parse_message

from .sources import SourceMessage


@dataclass(frozen=True)
class ParseResult:
    parsed: ParsedMail | None
    reason: str | None          # why it is not a message, when it is not


def parse_raw(raw: bytes, limits: ParseLimits) -> ParseResult:
    try:
        return ParseResult(parse_message(raw, limits), None)
    except NotAMessage as exc:
        return ParseResult(None, 'not a message: %s' % exc)


def parse_batch(raws: list[bytes], limits: ParseLimits) -> list[ParseResult]:
    return [parse_raw(raw, limits) for raw in raws]


def parsed_batches(batches: Iterable[list[SourceMessage]], limits: ParseLimits,
                   worker: bool = True) -> Iterator[tuple[list[SourceMessage], list[ParseResult]]]:
    """Each batch with its parse results, in order; from the second batch on, parsed by a worker process."""
    iterator = iter(batches)
    first = next(iterator, None)
    if first is None:
        return
    second = next(iterator, None)
    if second is None or not worker:
        yield first, parse_batch([m.raw for m in first], limits)
        if second is not None:
            yield second, parse_batch([m.raw for m in second], limits)
        for batch in iterator:
            yield batch, parse_batch([m.raw for m in batch], limits)
        return
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context('spawn')) as pool:
        pending = deque([(second, pool.submit(parse_batch, [m.raw for m in second], limits))])
        yield first, parse_batch([m.raw for m in first], limits)
        for batch in iterator:
            pending.append((batch, pool.submit(parse_batch, [m.raw for m in batch], limits)))
            done, future = pending.popleft()
            yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()
