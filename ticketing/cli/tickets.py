"""`postdesk ticket show|list`: tickets as SuperOffice TicketEntity objects."""
from __future__ import annotations

import argparse
import datetime
import sys

from .command import EXIT_OK, UsageError, config_of, database, write_json

SUMMARY_FIELDS = ('BaseStatus', 'Status', 'CreatedAt', 'LastChanged', 'FromAddress', 'ConnectId', 'NumMessages',
                  'NumReplies', 'HasAttachment')


def add_parsers(commands) -> None:
    ticket = commands.add_parser('ticket', help='read tickets').add_subparsers(metavar='ACTION')
    show = ticket.add_parser('show', help='one ticket as a TicketEntity')
    show.add_argument('ticket_id', type=int, metavar='ID')
    show.add_argument('--json', action='store_true')
    show.set_defaults(handler=run_ticket_show)
    tickets = ticket.add_parser('list', help='tickets in id order, streamed')
    tickets.add_argument('--json', action='store_true')
    tickets.add_argument('--limit', type=positive, metavar='N', help='at most N tickets')
    tickets.add_argument('--since', type=moment, metavar='DATE',
                         help='only tickets changed at or after DATE (ISO 8601: 2026-11-16 or 2026-11-16T09:00+01:00;'
                              ' UTC when no offset is given)')
    tickets.set_defaults(handler=run_ticket_list)


def positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError('must be a positive number, not %s' % text)
    return value


def moment(text: str) -> datetime.datetime:
    """An ISO 8601 date or date and time; UTC when it has no offset."""
    try:
        value = datetime.datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError('not an ISO 8601 date: %s' % text) from exc
    return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)


def run_ticket_show(args) -> int:
    from ..formats.superoffice import ticket_entity
    from ..store.tickets import TicketNotFound, ticket_record
    try:
        entity = ticket_entity(ticket_record(database(config_of(args)), args.ticket_id))
    except TicketNotFound as exc:
        raise UsageError(str(exc)) from exc
    if args.json:
        write_json(entity)
        return EXIT_OK
    out = sys.stdout
    out.write('Ticket %d: %s\n' % (entity['TicketId'], entity['Title']))
    for key in SUMMARY_FIELDS:
        out.write('  %-14s %s\n' % (key + ':', entity[key]))
    for message in entity['Messages']:
        out.write('  #%d %s %s [%s] %s\n' % (message['TicketMessageId'], message['CreatedAt'][:19],
                                            message['Type'], message['ThreadRule'], message['Author']))
        out.write('      %s\n' % message['Subject'])
    return EXIT_OK


def run_ticket_list(args) -> int:
    from ..formats.superoffice import ticket_list_item
    from ..store.tickets import list_tickets
    for record in list_tickets(database(config_of(args)), args.limit, args.since):
        ticket = ticket_list_item(record)
        if args.json:
            write_json(ticket)
        else:
            sys.stdout.write('%6d  %-9s %3d  %s\n' % (ticket['TicketId'], ticket['BaseStatus'],
                                                      ticket['NumMessages'], ticket['Title']))
    return EXIT_OK
