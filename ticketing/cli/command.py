"""What every command shares: exit statuses, usage errors, the configuration and the database of a run, JSON
output. Commands import what they need when they run, so that starting one costs only its own imports.

Exit status: 0 success; 1 when some input was not handled (a file that is not a message, a quarantined
message); 2 for usage errors (argparse's convention, unknown mailbox, missing path, bad configuration);
75 (EX_TEMPFAIL) when the database cannot be reached: nothing was lost, run it again later.
"""
from __future__ import annotations

import json
import sys

from ..config import Config, load_config

EXIT_OK, EXIT_INCOMPLETE, EXIT_USAGE, EXIT_TEMPFAIL = 0, 1, 2, 75


class UsageError(Exception):
    """Arguments that name something that does not exist (exit status 2)."""


def config_of(args) -> Config:
    return load_config(args.config)


def database(config: Config):
    """A connection (autocommit) to the configured database, with the schema in place. The store is imported
    here, not at start: `postdesk parse` never loads psycopg."""
    from ..store.db import open_database
    conn = open_database(config.database_url, config.embedded_data)
    conn.autocommit = True
    return conn


def write_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, default=str) + '\n')


def read_text(path: str) -> str:
    try:
        with open(path, encoding='utf-8', errors='replace') as handle:
            return handle.read()
    except OSError as exc:
        raise UsageError('cannot read %s: %s' % (path, exc.strerror)) from exc
