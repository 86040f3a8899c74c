"""`postdesk queue add` and `postdesk workbin add`: where agents' work waits (Genesys queues, and the workbins of
agent groups and place groups)."""
from __future__ import annotations

import sys

from .command import EXIT_OK, UsageError, config_of, database, write_json


def add_parsers(commands) -> None:
    queue = commands.add_parser('queue', help="queues of agents' work").add_subparsers(metavar='ACTION')
    add = queue.add_parser('add', help='add a queue (with --mailbox: the queue new mail of that mailbox goes to)')
    add.add_argument('name')
    add.add_argument('--mailbox', metavar='ADDRESS', help="make it the mailbox's default queue")
    add.add_argument('--json', action='store_true')
    add.set_defaults(handler=run_queue_add)
    workbin = commands.add_parser('workbin', help="workbins shared by a group").add_subparsers(metavar='ACTION')
    wadd = workbin.add_parser('add', help='add a workbin of an agent group or a place group')
    wadd.add_argument('name')
    group = wadd.add_mutually_exclusive_group(required=True)
    group.add_argument('--agent-group', metavar='GROUP')
    group.add_argument('--place-group', metavar='GROUP')
    wadd.add_argument('--json', action='store_true')
    wadd.set_defaults(handler=run_workbin_add)


def run_queue_add(args) -> int:
    from ..operations.mailboxes import UnknownMailbox
    from ..operations.queues import add_queue
    try:
        queue_id, added = add_queue(database(config_of(args)), args.name, args.mailbox)
    except (UnknownMailbox, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    if args.json:
        write_json({'QueueId': queue_id, 'Name': args.name, 'Mailbox': args.mailbox})
    else:
        sys.stdout.write('queue %d: %s (%s)\n' % (queue_id, args.name, 'added' if added else 'exists already'))
    return EXIT_OK


def run_workbin_add(args) -> int:
    from ..formats.genesys import workbin_json
    from ..operations.queues import add_workbin
    try:
        workbin = add_workbin(database(config_of(args)), args.name, args.agent_group, args.place_group)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if args.json:
        write_json(workbin_json(workbin))
    else:
        sys.stdout.write('workbin %d: %s of %s %s\n' % (workbin.workbin_id, workbin.name,
                                                       'agent group' if args.agent_group else 'place group',
                                                       args.agent_group or args.place_group))
    return EXIT_OK
