"""The `postdesk` command line: the parser, assembled from one module per command family, and dispatch.

Exit statuses are in `command.py`. Database errors are answered here: PostgreSQL out of reach is 75
(EX_TEMPFAIL, run it again), a usage error or a bad configuration 2.
"""
from __future__ import annotations

import argparse
import logging
import sys

from . import agents, mailboxes, outbox, parse, quarantine, replay, replies, serve, status, tickets, work
from .command import EXIT_INCOMPLETE, EXIT_TEMPFAIL, EXIT_USAGE, UsageError

FAMILIES = (parse, mailboxes, replay, tickets, serve, replies, outbox, quarantine, status, agents, work)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, 'handler', None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    from ..config import ConfigError
    from ..logs import BRIEF_FORMAT, use_format
    from ..store.db import DatabaseError, DatabaseUnavailable, first_line, is_transient
    logging.basicConfig(level=logging.INFO if getattr(args, 'verbose', False) else logging.WARNING)
    try:
        use_format(args.log_format or configured_log_format(args), BRIEF_FORMAT)
        return args.handler(args)
    except (UsageError, ConfigError) as exc:
        sys.stderr.write('postdesk: %s\n' % exc)
        return EXIT_USAGE
    except DatabaseUnavailable as exc:
        sys.stderr.write('postdesk: %s\n' % exc)
        return EXIT_TEMPFAIL
    except DatabaseError as exc:
        if not is_transient(exc):
            raise
        sys.stderr.write('postdesk: PostgreSQL is unavailable: %s\n' % first_line(exc))
        return EXIT_TEMPFAIL
    except BrokenPipeError:
        return EXIT_INCOMPLETE


def configured_log_format(args) -> str:
    """`[logging] format` or POSTDESK_LOG_FORMAT; text when the configuration cannot be read (the command that
    reads it reports why)."""
    from ..config import ConfigError, load_config
    try:
        return load_config(args.config).log_format
    except ConfigError:
        return 'text'


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='postdesk', description='Email ingestion and ticketing pipeline.')
    parser.add_argument('--config', help='TOML configuration file (default: $POSTDESK_CONFIG)')
    parser.add_argument('-v', '--verbose', action='store_true', help='log what happens')
    parser.add_argument('--log-format', choices=('text', 'json'),
                        help='text (default) or json: one JSON object per line, for log shippers')
    commands = parser.add_subparsers(title='commands', metavar='COMMAND')
    for family in FAMILIES:
        family.add_parsers(commands)
    return parser
