"""Shared fixtures: a real PostgreSQL for every test, on a clean database of its own.

The server is TEST_DATABASE_URL or DATABASE_URL when set (CI uses the machine's PostgreSQL 15), else the embedded
server of the pgserver package, started once for the session and stopped at its end. The schema is applied once
to a template database; each test gets a fresh copy (CREATE DATABASE ... TEMPLATE), dropped afterwards.
"""
from __future__ import annotations

import itertools
import os
import pathlib
import shutil
import subprocess
import sys
import uuid

import psycopg
import pytest
from psycopg import conninfo, sql

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ticketing.config import Config  # noqa: E402
from ticketing.store.db import ensure_schema, start_embedded  # noqa: E402

_counter = itertools.count()


def _server_url() -> str:
    url = os.environ.get('TEST_DATABASE_URL') or os.environ.get('DATABASE_URL')
    if url:
        return url
    return start_embedded(os.environ.get('POSTDESK_TEST_PGDATA', '/var/tmp/postdesk-test-%d/pgdata' % os.getuid()))


def _with_dbname(url: str, dbname: str) -> str:
    params = conninfo.conninfo_to_dict(url)
    params['dbname'] = dbname
    return conninfo.make_conninfo(**params)


@pytest.fixture(scope='session')
def server_url() -> str:
    return _server_url()


@pytest.fixture(scope='session')
def template_db(server_url):
    """A database with the schema applied, copied for every test."""
    name = 'postdesk_template_%s' % uuid.uuid4().hex[:8]
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL('CREATE DATABASE {}').format(sql.Identifier(name)))
    with psycopg.connect(_with_dbname(server_url, name), autocommit=True) as conn:
        ensure_schema(conn)
    yield name
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL('DROP DATABASE IF EXISTS {} WITH (FORCE)').format(sql.Identifier(name)))


@pytest.fixture
def db_url(server_url, template_db):
    """The URL of a fresh database with the schema in place, dropped after the test."""
    name = 'postdesk_test_%d_%s' % (os.getpid(), next(_counter))
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL('DROP DATABASE IF EXISTS {} WITH (FORCE)').format(sql.Identifier(name)))
        admin.execute(sql.SQL('CREATE DATABASE {} TEMPLATE {}').format(sql.Identifier(name),
                                                                       sql.Identifier(template_db)))
    yield _with_dbname(server_url, name)
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL('DROP DATABASE IF EXISTS {} WITH (FORCE)').format(sql.Identifier(name)))


@pytest.fixture
def conn(db_url):
    with psycopg.connect(db_url, autocommit=True) as connection:
        yield connection


@pytest.fixture
def config(db_url) -> Config:
    return Config(database_url=db_url, batch_size=100)


def postdesk_executable() -> str:
    found = shutil.which('postdesk', path=os.path.dirname(sys.executable)) or shutil.which('postdesk')
    if not found:
        raise RuntimeError('the postdesk console script is not installed (pip install -e .)')
    return found


@pytest.fixture
def run_postdesk(db_url, tmp_path):
    """Run the `postdesk` command against the test database; returns the CompletedProcess."""
    def run(*args: str, check: bool = False, timeout: float = 120, extra_env: dict | None = None):
        env = dict(os.environ, DATABASE_URL=db_url)
        env.pop('POSTDESK_CONFIG', None)
        env.update(extra_env or {})
        return subprocess.run([postdesk_executable(), *args], capture_output=True, text=True, env=env,
                              timeout=timeout, check=check, cwd=tmp_path)
    return run
