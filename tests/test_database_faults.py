"""Transient database errors while storing: retried in a fresh transaction, never a reason to quarantine a
message, and `postdesk replay` exits 75 (EX_TEMPFAIL) when PostgreSQL stays away. Real processes, a real
PostgreSQL.

"PostgreSQL stopped" is made without stopping the shared server that other test runs use: the test database
refuses new connections (ALTER DATABASE ... ALLOW_CONNECTIONS false) and its backends are terminated
(pg_terminate_backend). To the client this is what a stopped server looks like: the connection is lost mid-run
and no new one can be opened.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time

import psycopg
import pytest
from psycopg import errors

from conftest import postdesk_executable
from corpus import standard_corpus
from mails import MAILBOX, make_message
from test_replay_cli import add_mailbox, lines, write
from test_serve import _set_database_available, wait_for


def start_replay(db_url: str, cwd, *args: str) -> subprocess.Popen:
    env = dict(os.environ, DATABASE_URL=db_url)
    env.pop('POSTDESK_CONFIG', None)
    return subprocess.Popen([postdesk_executable(), 'replay', *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)


def stored(conn) -> int:
    return conn.execute('SELECT count(*) FROM interaction').fetchone()[0]


def test_replay_exits_75_when_postgresql_goes_away_and_a_second_run_stores_the_rest_once(
        run_postdesk, tmp_path, conn, server_url, db_url):
    add_mailbox(run_postdesk, 'support@helpdesk.example.com', '--default')
    folder = tmp_path / 'corpus'
    folder.mkdir()
    for path in standard_corpus(1000):
        shutil.copy(path, folder / path.name)
    replay = start_replay(db_url, tmp_path, str(folder))
    try:
        wait_for(lambda: stored(conn) >= 100 or replay.poll() is not None, timeout=120)
        _set_database_available(server_url, db_url, False)
        out, err = replay.communicate(timeout=120)
    finally:
        if replay.poll() is None:
            replay.kill()
            replay.wait()
        _set_database_available(server_url, db_url, True)
    assert replay.returncode == 75, err[-2000:]
    assert 'Traceback' not in err
    assert 'messages were stored before' in err and 'run the same replay again' in err
    with psycopg.connect(db_url, autocommit=True) as again:
        first = stored(again)
        assert 100 <= first < 1000
        assert again.execute('SELECT count(*) FROM quarantine').fetchone()[0] == 0
    second = run_postdesk('replay', str(folder), timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    with psycopg.connect(db_url, autocommit=True) as after:
        total, distinct = after.execute('SELECT count(*), count(DISTINCT message_id) FROM interaction '
                                        "WHERE direction = 'inbound'").fetchone()
        assert (total, distinct) == (1000, 1000)
        assert after.execute('SELECT count(*) FROM quarantine').fetchone()[0] == 0
    assert 'duplicate %d' % first in second.stdout


def test_a_deadlock_with_a_concurrent_writer_quarantines_nothing_and_stores_everything(
        run_postdesk, tmp_path, conn, db_url):
    """A writer locks two tickets in the opposite order from intake's batch of follow-ups on them; PostgreSQL
    breaks the deadlock by failing intake's transaction (the writer's deadlock_timeout is set longer so that it
    is intake that is chosen), and intake stores the batch again."""
    add_mailbox(run_postdesk, MAILBOX, '--default')
    for n in (1, 2):
        write(tmp_path / 'first' / ('%d.eml' % n), make_message(message_id='<q%d@c.example>' % n,
                                                                subject='question %d' % n))
    assert run_postdesk('replay', str(tmp_path / 'first')).returncode == 0
    for n in (1, 2):
        write(tmp_path / 'second' / ('%d.eml' % n), make_message(
            message_id='<a%d@c.example>' % n, in_reply_to='<q%d@c.example>' % n, subject='Re: question %d' % n))
    (low, high) = [r[0] for r in conn.execute('SELECT ticket_id FROM ticket ORDER BY ticket_id').fetchall()]
    with psycopg.connect(db_url) as writer:
        writer.execute("SET deadlock_timeout = '30s'")
        writer.execute('UPDATE ticket SET last_changed = now() WHERE ticket_id = %s', (high,))
        replay = start_replay(db_url, tmp_path, '--json', str(tmp_path / 'second'))
        wait_for(lambda: intake_waits_for_a_lock(conn, writer), timeout=60)
        writer.execute('UPDATE ticket SET last_changed = now() WHERE ticket_id = %s', (low,))   # the deadlock
        writer.commit()
    out, err = replay.communicate(timeout=120)
    assert replay.returncode == 0, err
    assert [o['Outcome'] for o in lines(out)] == ['followup', 'followup']
    assert 'deadlock detected' in err
    assert conn.execute('SELECT count(*) FROM quarantine').fetchone()[0] == 0
    assert conn.execute('SELECT num_messages FROM ticket ORDER BY ticket_id').fetchall() == [(2,), (2,)]


def intake_waits_for_a_lock(conn, writer) -> bool:
    return conn.execute("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        'AND pid <> %s AND datname = current_database())', (writer.info.backend_pid,)).fetchone()[0]


@pytest.mark.parametrize('error, transient', [
    (errors.DeadlockDetected, True), (errors.SerializationFailure, True), (errors.LockNotAvailable, True),
    (errors.AdminShutdown, True), (errors.TooManyConnections, True), (errors.CannotConnectNow, True),
    (errors.ConnectionFailure, True), (errors.UniqueViolation, False), (errors.ProgramLimitExceeded, False),
    (errors.CheckViolation, False)])
def test_transient_errors_are_told_by_sqlstate(error, transient):
    from ticketing.store.db import is_transient
    assert is_transient(error('x')) is transient
