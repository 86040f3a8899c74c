"""Connections and the schema: where PostgreSQL is (DATABASE_URL, or an embedded server from the pgserver package),
opening connections with psycopg 3, applying `schema.sql` once per database under an advisory lock, and telling a
transient database error (try again in a fresh transaction) from a failed statement.

Transient, by SQLSTATE (PostgreSQL's Appendix A): class 08 (connection exceptions), 40001 serialization failure,
40P01 deadlock, 55P03 lock not available (lock_timeout), 57P01/57P02/57P03 (administrator or crash shutdown, the
server cannot accept connections now), 53300 too many connections; and any error after which the connection is
gone. Such an error says nothing about the message being stored: it is retried, never a reason to quarantine.
"""
from __future__ import annotations

import hashlib
import logging
import os
import pathlib
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg

log = logging.getLogger(__name__)

# What other packages name in signatures and except clauses, without importing psycopg themselves.
Connection = psycopg.Connection
DatabaseError = psycopg.Error
OperationalError = psycopg.OperationalError
# What a value a client sent can make PostgreSQL refuse: text with NUL, a number or date out of range, a string
# too long for its column (class 22); a value too large for an index entry (class 54, an OperationalError).
ValueRefused = (psycopg.DataError, psycopg.errors.ProgramLimitExceeded)
SCHEMA_LOCK = 8_317_224_051   # pg_advisory_lock key: one schema upgrade at a time, whoever starts first


TRANSIENT_SQLSTATES = frozenset({
    '40001',      # serialization_failure
    '40P01',      # deadlock_detected
    '55P03',      # lock_not_available (lock_timeout)
    '57P01',      # admin_shutdown (pg_terminate_backend, smart or fast shutdown)
    '57P02',      # crash_shutdown
    '57P03',      # cannot_connect_now (starting up, shutting down, in recovery)
    '53300',      # too_many_connections
})


class DatabaseUnavailable(RuntimeError):
    """PostgreSQL cannot be reached (or stayed unreachable through the retries), or the embedded server cannot be
    started. Nothing was lost: the caller tries again later (exit 75, SMTP 451, HTTP 503 with Retry-After)."""


@dataclass(frozen=True)
class Backoff:
    """How a transient database error is retried: `attempts` tries in all, pausing `base` seconds after the first
    failure, doubled each time, at most `cap`."""
    attempts: int = 7
    base: float = 0.2
    cap: float = 5.0

    def pauses(self) -> Iterator[float]:
        """The pause before each retry (attempts - 1 of them)."""
        for number in range(self.attempts - 1):
            yield min(self.base * 2 ** number, self.cap)


def is_transient(exc: BaseException, conn: psycopg.Connection | None = None) -> bool:
    """Whether a database error is worth retrying in a fresh transaction (see the module's docstring)."""
    if isinstance(exc, DatabaseUnavailable):
        return True
    if not isinstance(exc, psycopg.Error):
        return False
    state = exc.sqlstate or ''
    if state in TRANSIENT_SQLSTATES or state.startswith('08'):
        return True
    return conn is not None and connection_lost(conn)


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (psycopg's run to several), or its type's name."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def schema_path() -> pathlib.Path:
    """schema.sql at the top of the project (or installed under sys.prefix/share/postdesk)."""
    here = pathlib.Path(__file__).resolve().parents[2] / 'schema.sql'
    if here.exists():
        return here
    return pathlib.Path(sys.prefix) / 'share' / 'postdesk' / 'schema.sql'


def schema_sql() -> str:
    return schema_path().read_text(encoding='utf-8')


def resolve_database_url(database_url: str | None, embedded_data: str) -> str:
    """The configured URL, or the URL of the embedded server (started now if it is not running)."""
    if database_url:
        return database_url
    return start_embedded(embedded_data)


def start_embedded(pgdata: str) -> str:
    """Start (or reuse) the embedded PostgreSQL in `pgdata`; it stops when the last process using it exits."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')          # platformdirs warns about XDG_RUNTIME_DIR on servers
        try:
            import pgserver
        except ImportError as exc:
            raise DatabaseUnavailable('DATABASE_URL is not set and the embedded PostgreSQL (pgserver) is not '
                                      'installed: pip install pgserver, or set DATABASE_URL') from exc
        os.makedirs(os.path.dirname(os.path.abspath(pgdata)), exist_ok=True)
        try:
            server = pgserver.get_server(pgdata, cleanup_mode='stop')
        except Exception as exc:   # pgserver raises subprocess and assertion errors of its own
            raise DatabaseUnavailable('cannot start the embedded PostgreSQL in %s: %s' % (pgdata, exc)) from exc
    return server.get_uri()


def connect(url: str, autocommit: bool = False) -> psycopg.Connection:
    try:
        return psycopg.connect(url, autocommit=autocommit, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable('cannot connect to PostgreSQL: %s' % str(exc).strip()) from exc


def schema_version() -> str:
    """The version of this code's schema: the sha256 of schema.sql, as `postdesk_meta` records it once applied."""
    return hashlib.sha256(schema_sql().encode('utf-8')).hexdigest()


def ensure_schema(conn: psycopg.Connection) -> bool:
    """Apply schema.sql unless this exact version is applied already. Returns True when it ran."""
    sql = schema_sql()
    version = schema_version()
    if _schema_version(conn) == version:
        return False
    with conn.transaction():
        conn.execute('SELECT pg_advisory_xact_lock(%s)', (SCHEMA_LOCK,))
        if _schema_version(conn) == version:
            return False
        conn.execute(sql)
        conn.execute("INSERT INTO postdesk_meta (key, value) VALUES ('schema_sha256', %s) "
                     "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", (version,))
    log.info('schema applied (%s)', version[:12])
    return True


def _schema_version(conn: psycopg.Connection) -> str | None:
    with conn.transaction():
        exists = conn.execute("SELECT to_regclass('postdesk_meta') IS NOT NULL").fetchone()[0]
        if not exists:
            return None
        row = conn.execute("SELECT value FROM postdesk_meta WHERE key = 'schema_sha256'").fetchone()
    return row[0] if row else None


def open_database(database_url: str | None, embedded_data: str) -> psycopg.Connection:
    """Connect to the configured (or embedded) database with the schema in place."""
    conn = connect(resolve_database_url(database_url, embedded_data))
    ensure_schema(conn)
    return conn


def connection_lost(conn: psycopg.Connection) -> bool:
    """Whether a database error means the connection is gone (try again later) rather than that a statement
    failed (psycopg reports some statement errors, like a too long index row, as OperationalError too)."""
    return conn.closed or conn.broken
