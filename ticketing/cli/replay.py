"""`postdesk replay`: files, folders, mbox files and Maildirs into tickets, with what became of each message.

With --json, one object per message: SuperOffice's TicketInfo keys (TicketId, Title, OwnerName, CategoryName,
PriorityName, TicketUrl, PersonName, ContactName) plus InteractionId, Outcome, ThreadRule, Source and Reason.
On a terminal a progress line runs on standard error; a summary ends the run. Quarantined messages are also
reported on standard error, one line each, so an operator sees them without --json.
"""
from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from ..model import DUPLICATE, FOLLOWUP, NEW, QUARANTINED, Outcome
from .command import EXIT_INCOMPLETE, EXIT_OK, EXIT_TEMPFAIL, UsageError, config_of, database, write_json


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
        return 'replayed %d messages: %s (%.0f messages/s)' % (self.total, self.counts_text(), self.rate())

    def finish(self, out) -> None:
        self._clear()
        out.write(self.summary() + '\n')
        out.flush()

    def _line(self) -> str:
        return '[%s] %d messages  %s  %.0f/s' % (self._bar(), self.total, self.counts_text(), self.rate())

    def _bar(self) -> str:
        filled = (self.total // 10) % 21
        return '=' * filled + '>' + ' ' * (20 - filled)

    def counts_text(self) -> str:
        return ', '.join('%s %d' % (name, self.counts[name])
                         for name in (NEW, FOLLOWUP, DUPLICATE, QUARANTINED))

    def _interactive(self) -> bool:
        return hasattr(self.stream, 'isatty') and self.stream.isatty()

    def _clear(self) -> None:
        if self._interactive() and self.last_drawn:
            self.stream.write('\r\x1b[K')


def add_parsers(commands) -> None:
    replay = commands.add_parser('replay', help='store .eml files, folders, mbox files and Maildirs as tickets')
    replay.add_argument('--mailbox', metavar='ADDRESS', help='deliver every message to this mailbox')
    replay.add_argument('--json', action='store_true', help='one JSON object per message')
    replay.add_argument('paths', nargs='+', metavar='PATH')
    replay.set_defaults(handler=run_replay)


def run_replay(args) -> int:
    from ..intake import Intake
    from ..intake.memory import keep_large_blocks_out_of_the_heap
    from ..intake.sources import SourceError, check_paths, iter_messages
    from ..store.db import DatabaseUnavailable
    missing = check_paths(args.paths)
    if missing:
        raise UsageError('no such file or directory: %s' % ', '.join(missing))
    keep_large_blocks_out_of_the_heap()
    config = config_of(args)
    conn = database(config)
    mailbox = named_mailbox(conn, args.mailbox) if args.mailbox else None
    progress = Progress()
    try:
        for outcome in Intake(conn, config, mailbox, reconnect=reconnect_to(config)).run(iter_messages(args.paths)):
            progress.add(outcome)
            if args.json:
                write_json(outcome_json(outcome, config))
    except SourceError as exc:                 # a path that vanished or became unreadable during the run
        progress.finish(sys.stderr if args.json else sys.stdout)
        raise UsageError(str(exc)) from exc
    except DatabaseUnavailable as exc:         # through the retries: the rest is stored by running it again
        progress.finish(sys.stderr if args.json else sys.stdout)
        sys.stderr.write('postdesk: %s; %d messages were stored before it went away (%s); run the same replay '
                         'again to store the rest, each once\n' % (exc, progress.total, progress.counts_text()))
        return EXIT_TEMPFAIL
    progress.finish(sys.stderr if args.json else sys.stdout)
    return EXIT_INCOMPLETE if progress.counts[QUARANTINED] else EXIT_OK


def reconnect_to(config):
    """A new autocommit connection to the run's database, for an intake whose connection was lost."""
    from ..store.db import connect, resolve_database_url
    url = resolve_database_url(config.database_url, config.embedded_data)
    return lambda: connect(url, autocommit=True)


def named_mailbox(conn, address: str):
    from ..operations.mailboxes import UnknownMailbox, find_mailbox
    try:
        return find_mailbox(conn, address)
    except UnknownMailbox as exc:
        raise UsageError(str(exc)) from exc


def outcome_json(outcome: Outcome, config) -> dict:
    """The object `replay --json` (and `quarantine retry --json`) prints for one message."""
    from ..formats.superoffice import ticket_info
    return ticket_info(outcome, config.ticket_url(outcome.ticket.ticket_id) if outcome.ticket else None)
