"""`postdesk quarantine list|show|retry`: messages kept with the reason they are not tickets."""
from __future__ import annotations

import sys

from .command import EXIT_INCOMPLETE, EXIT_OK, UsageError, config_of, database, write_json
from .progress import Progress, add_quiet_option


def add_parsers(commands) -> None:
    quarantine = commands.add_parser('quarantine', help='messages kept with the reason they are not tickets')
    held = quarantine.add_subparsers(metavar='ACTION')
    qlist = held.add_parser('list', help='held messages')
    qlist.add_argument('--all', action='store_true', help='released ones too')
    qlist.add_argument('--json', action='store_true')
    qlist.set_defaults(handler=run_quarantine_list)
    qshow = held.add_parser('show', help='the reason and headers of one held message')
    qshow.add_argument('quarantine_id', type=int, metavar='ID')
    qshow.set_defaults(handler=run_quarantine_show)
    qretry = held.add_parser('retry', help='run held messages through intake again (all, or those named)')
    qretry.add_argument('ids', type=int, nargs='*', metavar='ID')
    qretry.add_argument('--json', action='store_true')
    add_quiet_option(qretry)
    qretry.set_defaults(handler=run_quarantine_retry)


def run_quarantine_list(args) -> int:
    from ..formats.operator import held_json
    from ..store.quarantine import list_held
    for held in list_held(database(config_of(args)), args.all):
        if args.json:
            write_json(held_json(held))
        else:
            sys.stdout.write('%5d  %s  %-30s %s\n' % (held.quarantine_id, held.created_at.strftime('%Y-%m-%d %H:%M'),
                                                     held.source[-30:], held.reason))
    return EXIT_OK


def header_block(data: bytes) -> str:
    """The header block of a kept message, as text."""
    head = data.replace(b'\r\n', b'\n').split(b'\n\n', 1)[0]
    return head.decode('utf-8', 'replace').replace('\x00', '')


def run_quarantine_show(args) -> int:
    from ..store.quarantine import held_with_head
    found = held_with_head(database(config_of(args)), args.quarantine_id)
    if found is None:
        raise UsageError('no quarantined message %d' % args.quarantine_id)
    held, head = found
    sys.stdout.write('Quarantined message %d (%s)\n' % (held.quarantine_id, held.state))
    sys.stdout.write('  Reason:   %s\n  Source:   %s\n  Received: %s\n  Size:     %d bytes\n\n'
                     % (held.reason, held.source, held.created_at.isoformat(), held.size))
    sys.stdout.write(header_block(head) + '\n')
    return EXIT_OK


def run_quarantine_retry(args) -> int:
    from ..intake.retry import retry_each
    from ..model import QUARANTINED
    from ..store.quarantine import held_ids
    from .replay import OUTCOMES, outcome_json, reconnect_to
    config = config_of(args)
    conn = database(config)
    held = held_ids(conn, args.ids or None)
    progress = Progress(OUTCOMES, len(held), quiet=args.quiet)
    for quarantine_id, outcome in retry_each(conn, config, held, reconnect_to(config)):
        progress.count(outcome.outcome)
        if args.json:
            write_json(dict(outcome_json(outcome, config), QuarantineId=quarantine_id))
        else:
            progress.write('%5d  %s%s' % (quarantine_id, outcome.outcome,
                                          ': ' + outcome.reason if outcome.reason else
                                          ' (ticket %d)' % outcome.ticket.ticket_id if outcome.ticket else ''),
                           sys.stdout)
    progress.finish(sys.stderr, 'retried %d held messages: %s' % (progress.done, progress.counts_text()))
    return EXIT_INCOMPLETE if progress.counts[QUARANTINED] else EXIT_OK
