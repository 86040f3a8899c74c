"""Progress of long commands (`replay`, `quarantine retry`, `deliver --once`) on a terminal, drawn by tqdm: done
and total when the total is known (files counted first; an mbox by bytes read), the rate, the time left, and
what became of the items so far. Nothing is drawn when standard error is not a terminal, or with --quiet; the
summary line at the end is written either way.
"""
from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field

MESSAGES, BYTES = 'msg', 'B'


def add_quiet_option(parser) -> None:
    parser.add_argument('--quiet', action='store_true', help='no progress bar on a terminal')


def interactive(stream) -> bool:
    return hasattr(stream, 'isatty') and stream.isatty()


@dataclass
class Progress:
    """Counts what became of each item and, on a terminal, draws the bar. `unit` is MESSAGES (the bar moves by
    item) or BYTES (it moves by `read`); `names` are the counts shown, in order."""
    names: tuple[str, ...]
    total: int | None = None
    unit: str = MESSAGES
    quiet: bool = False
    stream: object = field(default_factory=lambda: sys.stderr)
    counts: Counter = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)
    bar: object = None

    def __post_init__(self):
        if self.quiet or not interactive(self.stream):
            return
        from tqdm import tqdm
        self.bar = tqdm(total=self.total, unit=self.unit, unit_scale=self.unit == BYTES, file=self.stream,
                        dynamic_ncols=True, mininterval=0.2, smoothing=0.1)

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def count(self, name: str, note: str | None = None) -> None:
        """One more item that became `name`; a note (a quarantined message) is written above the bar."""
        self.counts[name] += 1
        if note is not None:
            self.write(note)
        if self.bar is not None:
            if self.unit == MESSAGES:
                self.bar.update(1)
            self.bar.set_postfix_str(self.counts_text(), refresh=False)

    def read(self, size: int) -> None:
        """`size` more bytes of the input were read (BYTES)."""
        if self.bar is not None and self.unit == BYTES:
            self.bar.update(size)

    def write(self, line: str, out=None) -> None:
        """A line above the bar, on `out` (default: the bar's stream)."""
        out = out or self.stream
        if self.bar is not None:
            self.bar.write(line, file=out)
        else:
            out.write(line + '\n')

    def counts_text(self) -> str:
        return ', '.join('%s %d' % (name, self.counts[name]) for name in self.names)

    def finish(self, out, summary: str) -> None:
        """Take the bar away and write the summary line."""
        if self.bar is not None:
            if self.total is not None and self.unit == BYTES:
                self.bar.update(max(self.total - self.bar.n, 0))
            self.bar.close()
            self.bar = None
        out.write(summary + '\n')
        out.flush()
