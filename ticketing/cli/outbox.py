"""`postdesk deliver` and `postdesk outbox list|retry`: the outbox to the SMTP relay, and the operator's view."""
from __future__ import annotations

import logging
import signal
import sys
import threading

from .command import EXIT_INCOMPLETE, EXIT_OK, UsageError, config_of, database, write_json
from .progress import Progress, add_quiet_option

STATES = ('sent', 'deferred', 'failed')


def add_parsers(commands) -> None:
    deliver = commands.add_parser('deliver', help='send queued replies to the SMTP relay')
    deliver.add_argument('--once', action='store_true', help='send what is due now and exit')
    deliver.add_argument('--workers', type=int, default=None, help='delivery workers (default from config, 1)')
    add_quiet_option(deliver)
    deliver.set_defaults(handler=run_deliver)
    outbox = commands.add_parser('outbox', help='outgoing messages').add_subparsers(metavar='ACTION')
    olist = outbox.add_parser('list', help='queued and failed messages (--all: sent ones too)')
    olist.add_argument('--all', action='store_true')
    olist.add_argument('--json', action='store_true')
    olist.set_defaults(handler=run_outbox_list)
    oretry = outbox.add_parser('retry', help='queue a failed or waiting message again, due now')
    oretry.add_argument('outbox_ids', type=int, nargs='+', metavar='ID')
    oretry.add_argument('--json', action='store_true')
    oretry.set_defaults(handler=run_outbox_retry)


class Tally:
    """What the delivery workers of one run did, counted across threads; with --once, a line per attempt and a
    progress bar on a terminal."""

    def __init__(self, verbose: bool, progress: Progress):
        self.progress = progress
        self.errors: list[BaseException] = []
        self.verbose = verbose
        self.lock = threading.Lock()

    @property
    def states(self) -> dict[str, int]:
        return {state: self.progress.counts[state] for state in STATES}

    def report(self, attempt) -> None:
        with self.lock:
            self.progress.count(attempt.state)
            if self.verbose:
                self.progress.write('outbox %d: %s (%s)' % (attempt.row.outbox_id, attempt.state,
                                                           attempt.result.reply), sys.stdout)
                sys.stdout.flush()


def run_deliver(args) -> int:
    from ..outbox.worker import NoRelay, relay_of
    from ..store.outbox import count_due
    config = config_of(args)
    try:
        relay_of(config)
    except NoRelay as exc:
        raise UsageError(str(exc)) from exc
    with database(config) as conn:                 # the schema, before the workers start
        due = count_due(conn) if args.once else None
    if not args.once:
        logging.getLogger().setLevel(logging.INFO)
    tally = Tally(args.once, Progress(STATES, due, quiet=args.quiet or not args.once))
    run_delivery_threads(config, args, tally)
    if args.once:
        tally.progress.finish(sys.stdout, 'sent %(sent)d, deferred %(deferred)d, failed %(failed)d' % tally.states)
    return outcome_of(tally)


def run_delivery_threads(config, args, tally: Tally) -> None:
    from ..outbox.worker import run_delivery_worker
    from ..store.db import connect, resolve_database_url
    url = resolve_database_url(config.database_url, config.embedded_data)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    def work() -> None:
        try:
            run_delivery_worker(lambda: connect(url, autocommit=True), config, stop, args.once, tally.report)
        except Exception as exc:            # --once: a worker that could not finish makes the run fail
            logging.getLogger('postdesk.delivery').error('delivery worker stopped: %s', exc)
            tally.errors.append(exc)

    workers = [threading.Thread(target=work, name='postdesk-deliver-%d' % n)
               for n in range(args.workers or config.delivery_workers)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def outcome_of(tally: Tally) -> int:
    from ..store.db import DatabaseUnavailable, OperationalError
    if any(isinstance(exc, (DatabaseUnavailable, OperationalError)) for exc in tally.errors):
        raise DatabaseUnavailable('delivery stopped: the database is unavailable')
    return EXIT_INCOMPLETE if tally.errors or tally.states['deferred'] or tally.states['failed'] else EXIT_OK


def run_outbox_list(args) -> int:
    from ..formats.operator import outbox_json
    from ..statuses import OUTBOX_FAILED, OUTBOX_QUEUED, OUTBOX_STATES
    from ..store.outbox import list_outbox
    states = OUTBOX_STATES if args.all else (OUTBOX_QUEUED, OUTBOX_FAILED)
    for entry in list_outbox(database(config_of(args)), states):
        if args.json:
            write_json(outbox_json(entry))
        else:
            sys.stdout.write('%5d  %-6s  ticket %-6s %-30s attempts %d  %s\n' % (
                entry.outbox_id, entry.state, entry.ticket_id, ','.join(entry.rcpt_to)[:30], entry.attempts,
                entry.last_error or entry.relay_reply or entry.subject))
    return EXIT_OK


def run_outbox_retry(args) -> int:
    from ..formats.operator import outbox_json
    from ..operations.outbox import retry_outbox
    from ..statuses import OUTBOX_QUEUED
    conn = database(config_of(args))
    missing = []
    for outbox_id in args.outbox_ids:
        entry = retry_outbox(conn, outbox_id)
        if entry is None:
            missing.append(outbox_id)
        elif args.json:
            write_json(outbox_json(entry))
        else:
            sys.stdout.write('%d: %s\n' % (outbox_id, 'queued, due now' if entry.state == OUTBOX_QUEUED else
                                            'already sent; not sent again'))
    if missing:
        raise UsageError('no outbox message %s' % ', '.join(map(str, missing)))
    return EXIT_OK
