"""What a worker process of the HTTP API does with CreateTicketFromMailData's messages (seed 003): it parses and
stores a batch of them, through the same intake as `replay --mailbox` (operations.mail.create_from_mails), on a
connection of its own that it keeps from batch to batch.

The API server's event loop and its threads share one interpreter lock; parsing a message and planning its rows
are Python's work, so in the server they would wait for the HTTP requests' turn and hold theirs back. In a worker
they run beside them, on the other core, and two workers store two batches at once.
"""
from __future__ import annotations

from ..config import Config
from ..store.db import Connection, DatabaseUnavailable, OperationalError, connect, first_line
from ..store.pool import closed_by_server
from .mail import MailRequest, MailResult, UnknownMailboxId, create_from_mails

PRELOAD = ['ingest', 'ticketing.intake.parse_ahead', 'ticketing.operations.mail_workers']
_WORKER: dict[str, object] = {}                  # this worker's config and connection


def start(config: Config) -> None:
    """A worker's initializer."""
    _WORKER['config'] = config


def connection() -> Connection:
    """This worker's connection: the one it has, unless the server closed it meanwhile. Raises
    DatabaseUnavailable."""
    conn = _WORKER.get('conn')
    if conn is None or closed_by_server(conn):
        if conn is not None:
            conn.close()
        conn = _WORKER['conn'] = connect(_WORKER['config'].database_url, autocommit=True)
    return conn


def open_connection() -> None:
    """Connect now (a worker warmed at the server's start answers its first batch without connecting)."""
    connection()


def store(requests: list[MailRequest]) -> list[MailResult | UnknownMailboxId]:
    """Parse (unless parsed already) and store the messages, as create_from_mails does. Raises
    DatabaseUnavailable (which crosses back to the server; psycopg's errors would not always)."""
    try:
        return create_from_mails(connection(), _WORKER['config'], requests)
    except OperationalError as exc:
        lost = _WORKER.pop('conn', None)
        if lost is not None:
            lost.close()
        raise DatabaseUnavailable('PostgreSQL is unavailable: %s' % first_line(exc)) from None
