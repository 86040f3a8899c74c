"""Connections and the schema: where PostgreSQL is (DATABASE_URL, or an embedded server from the pgserver package),
opening connections with psycopg 3, applying `schema.sql` once per database under an advisory lock, and telling a
lost connection from a failed statement.
"""
from __future__ import annotations

import hashlib
import logging
import os
import pathlib
import sys
import warnings

import psycopg

log = logging.getLogger(__name__)

# What other packages name in signatures and except clauses, without importing psycopg themselves.
Connection = psycopg.Connection
DatabaseError = psycopg.Error
OperationalError = psycopg.OperationalError
SCHEMA_LOCK = 8_317_224_051   # pg_advisory_lock key: one schema upgrade at a time, whoever starts first


class DatabaseUnavailable(RuntimeError):
    """PostgreSQL cannot be reached or the embedded server cannot be started."""


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


def ensure_schema(conn: psycopg.Connection) -> bool:
    """Apply schema.sql unless this exact version is applied already. Returns True when it ran."""
    sql = schema_sql()
    version = hashlib.sha256(sql.encode('utf-8')).hexdigest()
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
