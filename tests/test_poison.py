"""A spooled message that kills the intake worker process each time it is parsed (a hard crash, not an
exception) is quarantined after `max_crashes` crashes, and the messages after it become tickets.

The crash is made by a test-only hook of the parser (`ticketing.intake.parse_ahead`): with the environment
variable POSTDESK_TEST_CRASH_MARKER set, parsing a message that contains the marker ends the process at once with
os._exit, as a crash in C code would. Everything else is real: `postdesk serve`, its supervisor starting the
worker again, SMTP, PostgreSQL.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import pathlib
import signal
import smtplib

from mails import MAILBOX, make_message
from test_serve import Server, mailbox, tickets_for, wait_for   # noqa: F401 (fixture)

MARKER = 'X-Test-Crash: kill-the-parser'


def test_a_message_that_kills_the_worker_is_quarantined_after_3_crashes_and_the_next_ones_become_tickets(
        db_url, tmp_path, mailbox, conn):
    running = Server(db_url, tmp_path, {'POSTDESK_TEST_CRASH_MARKER': MARKER})
    try:
        poison = make_message(message_id='<poison@c.example>', headers={'X-Test-Crash': 'kill-the-parser'})
        with smtplib.SMTP('127.0.0.1', running.smtp_port, timeout=10) as client:
            client.sendmail('anna@customer.example', [MAILBOX], poison)
            for n in range(3):
                client.sendmail('anna@customer.example', [MAILBOX], make_message(
                    message_id='<after-%d@c.example>' % n, subject='after %d' % n))
        held = wait_for(lambda: conn.execute('SELECT reason, raw_id FROM quarantine').fetchall(), timeout=90)
        for n in range(3):
            assert wait_for(lambda: tickets_for(conn, 'after-%d@c.example' % n), timeout=60)
    finally:
        running.stop()
    assert held[0][0] == 'crashed the intake worker 3 times'
    state, attempts, crashes = conn.execute('SELECT state, attempts, crashes FROM raw_message WHERE raw_id = %s',
                                            (held[0][1],)).fetchone()
    assert (state, crashes) == ('quarantined', 3) and attempts == 4
    assert sum('postdesk-intake-0' in line and 'starting it again' in line for line in running.lines) == 3
    assert conn.execute("SELECT count(*) FROM raw_message WHERE state = 'pending'").fetchone()[0] == 0
    assert conn.execute('SELECT max(crashes) FROM raw_message WHERE raw_id <> %s', (held[0][1],)).fetchone()[0] <= 1


def test_a_message_handed_in_over_the_api_that_crashes_the_parser_is_quarantined_and_the_server_goes_on(
        db_url, tmp_path, mailbox, conn):
    """CreateTicketFromMailData parses in worker processes: a crash costs a worker, not the server."""
    from test_api import client, new_agent, post_mail
    token = new_agent(conn, 'anna', MAILBOX)
    running = Server(db_url, tmp_path, {'POSTDESK_TEST_CRASH_MARKER': MARKER})
    try:
        with client(running, token) as http:
            poison = post_mail(http, make_message(message_id='<poison@c.example>',
                                                  headers={'X-Test-Crash': 'kill-the-parser'}))
            after = [post_mail(http, make_message(message_id='<api-after-%d@c.example>' % n)) for n in range(2)]
    finally:
        exit_status = running.stop()
    assert poison.status_code == 422, poison.text
    assert poison.json()['Reason'] == 'the parser crashed on it (its worker process died)'
    assert [answer.status_code for answer in after] == [200, 200]
    assert exit_status == 0
    [(reason, data)] = conn.execute('SELECT reason, data FROM quarantine').fetchall()
    assert reason == poison.json()['Reason'] and b'kill-the-parser' in bytes(data)


def test_a_crash_in_a_batch_costs_only_the_message_that_caused_it(db_url, tmp_path, mailbox, conn):
    """Messages handed in at once are stored in batches by worker processes: the others of a batch whose worker
    crashed are stored again on their own, and only the message that crashes again is quarantined."""
    from test_api import client, new_agent, post_mail
    token = new_agent(conn, 'anna', MAILBOX)
    running = Server(db_url, tmp_path, {'POSTDESK_TEST_CRASH_MARKER': MARKER})
    messages = [make_message(message_id='<batch-%d@c.example>' % n) for n in range(7)]
    messages.insert(3, make_message(message_id='<poison@c.example>', headers={'X-Test-Crash': 'kill-the-parser'}))
    try:
        with client(running, token) as http:
            with concurrent.futures.ThreadPoolExecutor(len(messages)) as senders:
                answers = list(senders.map(lambda m: post_mail(http, m), messages))
            after = post_mail(http, make_message(message_id='<after@c.example>'))
    finally:
        exit_status = running.stop()
    statuses = [answer.status_code for answer in answers]
    assert statuses == [200] * 3 + [422] + [200] * 4, [answer.text for answer in answers]
    assert answers[3].json()['Reason'] == 'the parser crashed on it (its worker process died)'
    assert {answer.json()['Outcome'] for n, answer in enumerate(answers) if n != 3} == {'new'}, 'each stored once'
    assert after.status_code == 200 and exit_status == 0
    stored = {row[0] for row in conn.execute('SELECT message_id FROM interaction').fetchall()}
    assert stored == {'batch-%d@c.example' % n for n in range(7)} | {'after@c.example'}
    assert conn.execute('SELECT count(*) FROM quarantine').fetchone()[0] == 1


def test_messages_handed_in_are_stored_in_the_server_when_no_worker_can_start(db_url, mailbox, conn):
    """A fault these tests cannot cause for real (they run as root, whom process limits do not bind): the intake's
    worker pool stands in for one whose workers cannot be started. The message is stored all the same."""
    from ticketing.api.mail_intake import MailIntake
    from ticketing.config import Config
    from ticketing.intake.worker_pool import WorkersUnavailable
    from ticketing.model import Agent
    from ticketing.operations.mail import MailRequest
    from ticketing.store.pool import Pools

    class NoWorkers:
        async def run(self, function, *args):
            raise WorkersUnavailable('the fork server cannot start')

        def close(self) -> None:
            pass

    async def hand_in():
        pools = Pools(db_url, 2, 5)
        await pools.open()
        intake = MailIntake(pools, Config(database_url=db_url))
        intake.workers = [NoWorkers()]
        try:
            return await intake.store(MailRequest(Agent(1, 'anna', 'Anna', None, 'admin', True), 1,
                                                  make_message(message_id='<no-workers@c.example>')))
        finally:
            await intake.close()
            await pools.close()
    result = asyncio.run(hand_in())
    assert result.outcome.outcome == 'new'
    assert conn.execute("SELECT count(*) FROM interaction WHERE message_id = 'no-workers@c.example'"
                        ).fetchone()[0] == 1


def test_a_message_whose_worker_died_after_its_commit_is_answered_as_stored_not_quarantined(db_url, mailbox, conn):
    """A worker killed between its batch's commit and its answer (a moment kill -9 cannot hit on purpose): the
    decision after a second crash is taken here directly. A stored message is answered as what it became; one
    that is not stored, with or without a Message-ID, is quarantined as a crash."""
    from ticketing.api.mail_intake import MailIntake
    from ticketing.config import Config
    from ticketing.model import Agent
    from ticketing.operations.mail import MailRequest
    from ticketing.store.pool import Pools

    agent = Agent(1, 'anna', 'Anna', None, 'admin', True)
    stored = MailRequest(agent, 1, make_message(message_id='<stored-then-killed@c.example>'))
    no_id = MailRequest(agent, 1, make_message(message_id=None, subject='no id'))
    never = MailRequest(agent, 1, make_message(message_id='<never-stored@c.example>'))

    async def decide():
        pools = Pools(db_url, 2, 5)
        await pools.open()
        intake = MailIntake(pools, Config(database_url=db_url))
        try:
            first = [await intake.store(stored), await intake.store(no_id)]
            after = [intake.after_second_crash(request) for request in (stored, no_id, never)]
            return first, after
        finally:
            await intake.close()
            await pools.close()
    first, after = asyncio.run(decide())
    [[again], [again_no_id], [crashed]] = after
    assert (again.outcome.outcome, again.outcome.ticket.ticket_id) == ('duplicate', first[0].outcome.ticket.ticket_id)
    assert again.outcome.interaction_id == first[0].outcome.interaction_id
    assert (again_no_id.outcome.outcome, again_no_id.outcome.interaction_id) == ('duplicate',
                                                                               first[1].outcome.interaction_id)
    assert crashed.outcome.outcome == 'quarantined' and crashed.quarantine_id is not None
    assert conn.execute('SELECT count(*) FROM quarantine').fetchone()[0] == 1
    assert conn.execute('SELECT count(*) FROM interaction').fetchone()[0] == 2


def spool_one(conn) -> int:
    return conn.execute("INSERT INTO raw_message (sha256, data, size, state) VALUES ('\\x00', 'x', 1, 'pending') "
                        'RETURNING raw_id').fetchone()[0]


def test_a_claim_lost_with_its_connection_counts_no_crash_once_the_worker_releases_it(db_url, conn):
    """What a worker does after a database outage that terminated its connection (it is still alive)."""
    import psycopg
    from ticketing.store import spool
    raw_id = spool_one(conn)
    worker = psycopg.connect(db_url, autocommit=True)
    [claimed] = spool.claim_pending(worker, 10)
    lost = spool.backend_pid(worker)
    conn.execute('SELECT pg_terminate_backend(%s)', (lost,))
    wait_for(lambda: not conn.execute('SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = %s)',
                                      (lost,)).fetchone()[0])
    worker.close()
    with psycopg.connect(db_url, autocommit=True) as again:
        spool.release_lost_claims(again, lost)
        [reclaimed] = spool.claim_pending(again, 10)
    assert (claimed.raw_id, claimed.crashes, reclaimed.raw_id, reclaimed.crashes) == (raw_id, 0, raw_id, 0)


def test_a_claim_whose_worker_died_counts_a_crash(db_url, conn):
    import psycopg
    from ticketing.store import spool
    spool_one(conn)
    worker = psycopg.connect(db_url, autocommit=True)
    spool.claim_pending(worker, 10)
    gone = spool.backend_pid(worker)
    worker.close()                   # the process that held it is gone, and nobody released its claim
    wait_for(lambda: not conn.execute('SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = %s)',
                                      (gone,)).fetchone()[0])
    [reclaimed] = spool.claim_pending(conn, 10)
    assert reclaimed.crashes == 1


def descendants(pid: int) -> set[int]:
    """The processes whose ancestry leads to pid (from /proc)."""
    parents = {}
    for entry in pathlib.Path('/proc').iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / 'stat').read_text().rsplit(')', 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        return pathlib.Path('/proc/%d/stat' % pid).read_text().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False


def test_a_server_killed_outright_leaves_no_parse_worker_or_fork_server_behind(db_url, tmp_path, mailbox, conn):
    from test_api import client, new_agent, post_mail
    token = new_agent(conn, 'anna', MAILBOX)
    running = Server(db_url, tmp_path)
    try:
        with client(running, token) as http:
            assert post_mail(http, make_message()).status_code == 200
        children = descendants(running.process.pid)
        commands = [pathlib.Path('/proc/%d/cmdline' % pid).read_bytes() for pid in children if alive(pid)]
        assert any(b'forkserver' in command for command in commands), commands
        running.process.send_signal(signal.SIGKILL)
        running.process.wait(10)
        assert wait_for(lambda: not any(alive(pid) for pid in children), timeout=15), [
            pid for pid in children if alive(pid)]
    finally:
        running.stop()
