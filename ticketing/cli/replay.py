"""`postdesk replay`: files, folders, mbox files and Maildirs into tickets, with what became of each message.

With --json, one object per message: SuperOffice's TicketInfo keys (TicketId, Title, OwnerName, CategoryName,
PriorityName, TicketUrl, PersonName, ContactName) plus InteractionId, Outcome, ThreadRule, Source and Reason.
On a terminal a progress bar runs on standard error (see progress.py; --quiet for none); a summary ends the
run. Quarantined messages are also reported on standard error, one line each, so an operator sees them without
--json.
"""
from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator

from ..model import DUPLICATE, FOLLOWUP, NEW, QUARANTINED, Outcome, SourceMessage
from .command import EXIT_INCOMPLETE, EXIT_OK, EXIT_TEMPFAIL, UsageError, config_of, database, write_json
from .progress import BYTES, MESSAGES, Progress, add_quiet_option, interactive

OUTCOMES = (NEW, FOLLOWUP, DUPLICATE, QUARANTINED)


def add_parsers(commands) -> None:
    replay = commands.add_parser('replay', help='store .eml files, folders, mbox files and Maildirs as tickets')
    replay.add_argument('--mailbox', metavar='ADDRESS', help='deliver every message to this mailbox')
    replay.add_argument('--json', action='store_true', help='one JSON object per message')
    add_quiet_option(replay)
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
    progress = replay_progress(args)
    out = sys.stderr if args.json else sys.stdout
    try:
        intake = Intake(conn, config, mailbox, reconnect=reconnect_to(config))
        for outcome in intake.run(reading(iter_messages(args.paths), progress)):
            note = 'quarantined: %s: %s' % (outcome.source, outcome.reason) if outcome.outcome == QUARANTINED else None
            progress.count(outcome.outcome, note)
            if args.json:
                write_json(outcome_json(outcome, config))
    except SourceError as exc:                 # a path that vanished or became unreadable during the run
        progress.finish(out, summary(progress))
        raise UsageError(str(exc)) from exc
    except DatabaseUnavailable as exc:         # through the retries: the rest is stored by running it again
        progress.finish(out, summary(progress))
        sys.stderr.write('postdesk: %s; %d messages were stored before it went away (%s); run the same replay '
                         'again to store the rest, each once\n' % (exc, progress.done, progress.counts_text()))
        return EXIT_TEMPFAIL
    progress.finish(out, summary(progress))
    return EXIT_INCOMPLETE if progress.counts[QUARANTINED] else EXIT_OK


def replay_progress(args) -> Progress:
    """Files are counted first (the bar moves by message); with an mbox among them it moves by bytes read."""
    if args.quiet or not interactive(sys.stderr):
        return Progress(OUTCOMES, quiet=True)
    from ..intake.sources import measure
    size = measure(args.paths)
    if size.mboxes:
        return Progress(OUTCOMES, size.size, BYTES)
    return Progress(OUTCOMES, size.files, MESSAGES)


def reading(messages: Iterable[SourceMessage], progress: Progress) -> Iterator[SourceMessage]:
    for message in messages:
        progress.read(len(message.raw))
        yield message


def summary(progress: Progress) -> str:
    return 'replayed %d messages: %s (%.0f messages/s)' % (progress.done, progress.counts_text(), progress.rate())


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
