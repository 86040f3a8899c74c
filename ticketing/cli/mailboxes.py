"""`postdesk initdb` and `postdesk mailbox add|ack|list`."""
from __future__ import annotations

import sys

from .command import EXIT_OK, UsageError, config_of, database, read_text, write_json


def add_parsers(commands) -> None:
    initdb = commands.add_parser('initdb', help='create or upgrade the database schema')
    initdb.set_defaults(handler=run_initdb)
    mailbox = commands.add_parser('mailbox', help='mailboxes mail is delivered to').add_subparsers(metavar='ACTION')
    add = mailbox.add_parser('add', help='add a mailbox')
    add.add_argument('address')
    add.add_argument('--name', default='')
    add.add_argument('--category', default='')
    add.add_argument('--priority', default='Medium')
    add.add_argument('--follow-up', choices=('reopen', 'new-ticket'), default='reopen',
                     help='what a reply to a closed ticket does (default: reopen it)')
    add.add_argument('--default', action='store_true', help='deliver mail for no known mailbox here')
    add.add_argument('--catch-all', action='store_true',
                     help='take mail for any address of this mailbox\'s domain that names no other mailbox')
    add.add_argument('--json', action='store_true')
    add.set_defaults(handler=run_mailbox_add)
    add_ack_parser(mailbox)
    listing = mailbox.add_parser('list', help='list mailboxes')
    listing.add_argument('--json', action='store_true')
    listing.set_defaults(handler=run_mailbox_list)


def add_ack_parser(mailbox) -> None:
    ack = mailbox.add_parser('ack', help='acknowledge each new ticket of a mailbox automatically (or stop)')
    ack.add_argument('address')
    which = ack.add_mutually_exclusive_group(required=True)
    which.add_argument('--template', metavar='FILE',
                       help='text or HTML with {ticket_id}, {ref}, {subject}, {name}, {mailbox_name}')
    which.add_argument('--default', action='store_true', help='the built-in template')
    which.add_argument('--off', action='store_true', help='no acknowledgements')
    ack.set_defaults(handler=run_mailbox_ack)


def run_initdb(args) -> int:
    database(config_of(args)).close()
    sys.stdout.write('schema is in place\n')
    return EXIT_OK


def run_mailbox_add(args) -> int:
    from ..formats.operator import mailbox_json
    from ..operations.mailboxes import MailboxRequest, add_mailbox
    request = MailboxRequest(args.address, args.name, args.category, args.priority, args.follow_up, args.default,
                             args.catch_all)
    mailbox, added = add_mailbox(database(config_of(args)), request)
    if args.json:
        write_json(mailbox_json(mailbox))
    else:
        sys.stdout.write('mailbox %d: %s (%s)\n' % (mailbox.mailbox_id, mailbox.address,
                                                    'added' if added else 'exists already, unchanged'))
    return EXIT_OK


def run_mailbox_ack(args) -> int:
    from ..drafts import DEFAULT_TEMPLATE
    from ..operations.mailboxes import AckError, UnknownMailbox, set_acknowledgements
    template = None if args.off else DEFAULT_TEMPLATE if args.default else read_text(args.template)
    try:
        mailbox = set_acknowledgements(database(config_of(args)), args.address, template)
    except (AckError, UnknownMailbox) as exc:
        raise UsageError(str(exc)) from exc
    sys.stdout.write('mailbox %s: %s\n' % (mailbox.address, 'no acknowledgements' if template is None else
                                            'acknowledges new tickets'))
    return EXIT_OK


def run_mailbox_list(args) -> int:
    from ..formats.operator import mailbox_json
    from ..store.mailboxes import load_mailboxes
    for mailbox in load_mailboxes(database(config_of(args))):
        if args.json:
            write_json(mailbox_json(mailbox))
        else:
            sys.stdout.write('%4d  %-40s %s%s\n' % (mailbox.mailbox_id, mailbox.address, mailbox.name,
                                                    '  (default)' if mailbox.is_default else ''))
    return EXIT_OK
