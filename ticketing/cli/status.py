"""`postdesk status [--json]`: the pipeline's health for an operator or a monitoring check, as Postfix's `mailq`
shows its queue: the spool backlog and the age of its oldest message, held quarantine, queued and failed replies
and the age of the oldest queued one, deliveries in the last hour, the schema version, and whether each
configured listener of a running `postdesk serve` answers with its 220 greeting (RFC 5321 4.2, RFC 2033).

Exit status: 0 healthy; 1 when something needs a look (the oldest pending message waited longer than
--max-pending-age, a reply failed, a listener does not answer); 75 when the database cannot be reached.
"""
from __future__ import annotations

import socket
import sys

from ..model import ListenerCheck, PipelineFigures
from .command import EXIT_INCOMPLETE, EXIT_OK, EXIT_TEMPFAIL, config_of, write_json
from .serve import listen_option

GREETING_TIMEOUT = 3.0
DEFAULT_MAX_PENDING_AGE = 300.0


def add_parsers(commands) -> None:
    status = commands.add_parser('status', help="the pipeline's health: spool, quarantine, outbox, listeners")
    status.add_argument('--json', action='store_true', help='one JSON object (keys in the README)')
    status.add_argument('--smtp', metavar='HOST:PORT', help='the SMTP listener to check (default from config)')
    status.add_argument('--lmtp', metavar='HOST:PORT|unix:PATH', help='the LMTP listener to check ("off": none)')
    status.add_argument('--max-pending-age', type=float, default=DEFAULT_MAX_PENDING_AGE, metavar='SECONDS',
                        help='a spooled message waiting longer needs a look (default %(default).0f)')
    status.set_defaults(handler=run_status)


def run_status(args) -> int:
    from ..store.db import (DatabaseError, DatabaseUnavailable, connect, first_line, is_transient,
                            resolve_database_url, schema_version)
    from ..store.health import pipeline_figures
    config = config_of(args)
    listeners = check_listeners(config, args)
    try:
        with connect(resolve_database_url(config.database_url, config.embedded_data), autocommit=True) as conn:
            figures = pipeline_figures(conn)
    except (DatabaseUnavailable, DatabaseError) as exc:
        unreachable = is_transient(exc)
        report(args, None, listeners, ['database %s: %s' % ('unreachable' if unreachable else 'cannot be read',
                                                            first_line(exc))], None)
        return EXIT_TEMPFAIL if unreachable else EXIT_INCOMPLETE
    problems = problems_of(figures, listeners, args.max_pending_age)
    report(args, figures, listeners, problems, schema_version())
    return EXIT_INCOMPLETE if problems else EXIT_OK


def problems_of(figures: PipelineFigures, listeners: list[ListenerCheck], max_pending_age: float) -> list[str]:
    """What needs a look, one line each (none: healthy)."""
    problems = []
    waited = figures.spool_oldest_pending_seconds
    if waited is not None and waited > max_pending_age:
        problems.append('the oldest spooled message has waited %.0f s (more than %.0f s)'
                        % (waited, max_pending_age))
    if figures.outbox_failed:
        problems.append('%d replies failed (postdesk outbox list)' % figures.outbox_failed)
    problems += ['%s listener %s does not answer: %s' % (c.protocol.upper(), c.address, c.detail)
                 for c in listeners if not c.answers]
    return problems


def check_listeners(config, args) -> list[ListenerCheck]:
    configured = (('smtp', listen_option(args.smtp, config.smtp_listen)),
                  ('lmtp', listen_option(args.lmtp, config.lmtp_listen)))
    return [greeting_of(protocol, address) for protocol, address in configured if address]


def greeting_of(protocol: str, address: str) -> ListenerCheck:
    """Connect, read the greeting, say QUIT."""
    from ..mail.listener import ListenError, parse_listen
    try:
        where = parse_listen(address)
        family, target = (socket.AF_UNIX, where.path) if where.path else (socket.AF_INET, (where.host, where.port))
        if not where.path and ':' in where.host:
            family = socket.AF_INET6
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(GREETING_TIMEOUT)
            sock.connect(target)
            line = sock.makefile('rb').readline(512).decode('utf-8', 'replace').strip()
            sock.sendall(b'QUIT\r\n')
    except (OSError, ListenError) as exc:
        return ListenerCheck(protocol, address, False, str(exc) or type(exc).__name__)
    return ListenerCheck(protocol, address, line.startswith('220'), line or 'no greeting')


def report(args, figures: PipelineFigures | None, listeners: list[ListenerCheck], problems: list[str],
           expected_schema: str | None) -> None:
    from ..formats.operator import status_json
    document = status_json(figures, listeners, problems, expected_schema)
    if args.json:
        write_json(document)
    else:
        sys.stdout.write(status_text(document))


def status_text(document: dict) -> str:
    spool, outbox, database = document['spool'], document['outbox'], document['database']
    lines = ['%s' % ('healthy' if document['healthy'] else 'needs a look')]
    lines += ['  ! %s' % problem for problem in document['problems']]
    if database['reachable']:
        lines.append('  spool:       %d pending, oldest %s' % (spool['pending'],
                                                              seconds(spool['oldest_pending_seconds'])))
        lines.append('  quarantine:  %d held' % document['quarantine']['held'])
        lines.append('  outbox:      %d queued (oldest %s), %d failed, %d sent in the last hour' % (
            outbox['queued'], seconds(outbox['oldest_queued_seconds']), outbox['failed'], outbox['sent_last_hour']))
        lines.append('  schema:      %s%s' % ((database['schema_version'] or '-')[:12],
                                             '' if database['schema_current'] else ' (not this version\'s)'))
    for listener in document['listeners']:
        answer = 'answers' if listener['answers'] else 'DOES NOT ANSWER: ' + listener['detail']
        lines.append('  %-4s %-22s %s' % (listener['protocol'], listener['address'], answer))
    return '\n'.join(lines) + '\n'


def seconds(value: float | None) -> str:
    return '-' if value is None else '%.0f s' % value
