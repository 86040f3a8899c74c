"""`postdesk replay`: files, folders, mbox files and Maildirs into tickets, with what became of each message.

With --json, one object per message: SuperOffice's TicketInfo keys (TicketId, Title, OwnerName, CategoryName,
PriorityName, TicketUrl, PersonName, ContactName) plus InteractionId, Outcome, ThreadRule, Source and Reason.
On a terminal a progress line runs on standard error; a summary ends the run. Quarantined messages are also
reported on standard error, one line each, so an operator sees them without --json.
"""
from __future__ import annotations

import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from .config import Config
from .intake import QUARANTINED, Outcome


def ticket_info(outcome: Outcome, config: Config) -> dict:
    """The JSON object `replay --json` prints for one message."""
    ticket = outcome.ticket
    return {
        'TicketId': ticket.ticket_id if ticket else None,
        'Title': ticket.title if ticket else None,
        'OwnerName': ticket.owner_name if ticket else None,
        'CategoryName': ticket.category if ticket else None,
        'PriorityName': ticket.priority if ticket else None,
        'TicketUrl': config.ticket_url(ticket.ticket_id) if ticket else None,
        'PersonName': ticket.person_name if ticket else None,
        'ContactName': ticket.contact_name if ticket else None,
        'InteractionId': outcome.interaction_id,
        'Outcome': outcome.outcome,
        'ThreadRule': outcome.rule,
        'Source': outcome.source,
        'Reason': outcome.reason,
    }


@dataclass
class Progress:
    """Counts outcomes, draws a progress line on a terminal, and writes the summary."""
    stream: object = field(default_factory=lambda: sys.stderr)
    counts: Counter = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)
    last_drawn: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.total / elapsed if elapsed > 0 else 0.0

    def add(self, outcome: Outcome) -> None:
        self.counts[outcome.outcome] += 1
        if outcome.outcome == QUARANTINED:
            self._clear()
            self.stream.write('quarantined: %s: %s\n' % (outcome.source, outcome.reason))
        if self._interactive() and time.monotonic() - self.last_drawn > 0.1:
            self.last_drawn = time.monotonic()
            self.stream.write('\r%s' % self._line())
            self.stream.flush()

    def summary(self) -> str:
        return 'replayed %d messages: %s (%.0f messages/s)' % (self.total, self._counts_text(), self.rate())

    def finish(self, out) -> None:
        self._clear()
        out.write(self.summary() + '\n')
        out.flush()

    def _line(self) -> str:
        return '[%s] %d messages  %s  %.0f/s' % (self._bar(), self.total, self._counts_text(), self.rate())

    def _bar(self) -> str:
        filled = (self.total // 10) % 21
        return '=' * filled + '>' + ' ' * (20 - filled)

    def _counts_text(self) -> str:
        return ', '.join('%s %d' % (name, self.counts[name])
                         for name in ('new', 'followup', 'duplicate', 'quarantined'))

    def _interactive(self) -> bool:
        return hasattr(self.stream, 'isatty') and self.stream.isatty()

    def _clear(self) -> None:
        if self._interactive() and self.last_drawn:
            self.stream.write('\r\x1b[K')


def print_outcome(outcome: Outcome, config: Config, out) -> None:
    out.write(json.dumps(ticket_info(outcome, config), ensure_ascii=False) + '\n')
