"""`postdesk agent add|list|token|disable|password`: the agents who use the HTTP API, and their credentials.

A token is printed once, when it is made (`add`, `token`); only its keyed hash is stored.
"""
from __future__ import annotations

import sys

from .command import EXIT_OK, UsageError, config_of, database, write_json


def add_parsers(commands) -> None:
    agent = commands.add_parser('agent', help='agents of the HTTP API').add_subparsers(metavar='ACTION')
    add = agent.add_parser('add', help='add an agent and print its API token')
    add.add_argument('login')
    add.add_argument('--name', default='')
    add.add_argument('--email')
    add.add_argument('--role', choices=('agent', 'admin'), default='agent',
                     help="an agent works on its mailboxes' tickets, an admin on all")
    add.add_argument('--mailbox', action='append', default=[], metavar='ADDRESS', help='repeatable')
    add.add_argument('--queue', action='append', default=[], metavar='NAME',
                     help='a queue it is offered work from (postdesk queue add); repeatable')
    add.add_argument('--capacity', type=int, default=1, help='interactions it takes at once (default 1)')
    add.add_argument('--agent-group', action='append', default=[], metavar='GROUP',
                     help="whose shared workbins it sees; repeatable")
    add.add_argument('--place-group', action='append', default=[], metavar='GROUP', help='repeatable')
    add.add_argument('--json', action='store_true')
    add.set_defaults(handler=run_agent_add)
    listing = agent.add_parser('list', help='list agents')
    listing.add_argument('--json', action='store_true')
    listing.set_defaults(handler=run_agent_list)
    for name, handler, text in (('token', run_agent_token, 'a new API token (the old one stops working)'),
                                ('disable', run_agent_disable, 'the agent can no longer sign in'),
                                ('password', run_agent_password, 'set the password, read from standard input')):
        command = agent.add_parser(name, help=text)
        command.add_argument('login')
        command.set_defaults(handler=handler)


def run_agent_add(args) -> int:
    from ..formats.operator import new_agent_json
    from ..operations.agents import (AgentExists, BadAgent, NewAgent, UnknownMailbox, UnknownQueue, add_agent,
                                     server_key)
    config = config_of(args)
    conn = database(config)
    request = NewAgent(args.login, args.name, args.email, args.role, tuple(args.mailbox), tuple(args.queue),
                       args.capacity, tuple(args.agent_group), tuple(args.place_group))
    try:
        agent, token = add_agent(conn, request, server_key(conn, config.api_token_key))
    except (AgentExists, BadAgent, UnknownMailbox, UnknownQueue) as exc:
        raise UsageError(str(exc)) from exc
    if args.json:
        write_json(new_agent_json(agent, token))
    else:
        sys.stdout.write('agent %d: %s (%s)\ntoken: %s\n' % (agent.agent_id, agent.login, agent.role, token))
    return EXIT_OK


def run_agent_list(args) -> int:
    from ..formats.operator import agent_json
    from ..operations.agents import list_agents
    for agent in list_agents(database(config_of(args))):
        if args.json:
            write_json(agent_json(agent))
        else:
            sys.stdout.write('%5d  %-20s %-6s %-8s %s\n' % (agent.agent_id, agent.login, agent.role,
                                                          'active' if agent.active else 'disabled',
                                                          agent.full_name))
    return EXIT_OK


def run_agent_token(args) -> int:
    from ..operations.agents import UnknownAgent, replace_token, server_key
    config = config_of(args)
    conn = database(config)
    try:
        token = replace_token(conn, args.login, server_key(conn, config.api_token_key))
    except UnknownAgent as exc:
        raise UsageError(str(exc)) from exc
    sys.stdout.write(token + '\n')
    return EXIT_OK


def run_agent_disable(args) -> int:
    from ..operations.agents import UnknownAgent, disable_agent
    try:
        disable_agent(database(config_of(args)), args.login)
    except UnknownAgent as exc:
        raise UsageError(str(exc)) from exc
    sys.stdout.write('agent %s disabled\n' % args.login)
    return EXIT_OK


def run_agent_password(args) -> int:
    from ..operations.agents import BadAgent, UnknownAgent, set_password
    password = sys.stdin.readline().rstrip('\r\n')
    try:
        set_password(database(config_of(args)), args.login, password)
    except (BadAgent, UnknownAgent) as exc:
        raise UsageError(str(exc)) from exc
    sys.stdout.write('password of %s set\n' % args.login)
    return EXIT_OK
