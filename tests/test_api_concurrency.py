"""Requests at once: tickets asked for concurrently are read together (each request still gets its own ticket,
and only one it may see), the admission of requests to the event loop (at most so many at once, fewer while
mail is being received, a turn given back while a request waits elsewhere), and the API beside an SMTP
transaction and long polls on a real server."""
from __future__ import annotations

import asyncio
import concurrent.futures
import smtplib
import socket
import time

import psycopg
import pytest

from mails import MAILBOX, make_message
from test_api import SALES, client, new_agent, post_mail
from test_serve import Server
from ticketing.api.admission import Admission, Turn, admitted, waiting_elsewhere
from ticketing.api.reads import Coalesced
from ticketing.store import views
from ticketing.store.pool import Pools


# ------------------------------------------------------------------------------------------ reads together

@pytest.fixture
def two_mailboxes_with_tickets(db_url, tmp_path, conn, run_postdesk):
    conn.execute("INSERT INTO mailbox (address, name, is_default) VALUES (%s, 'Support', true)", (MAILBOX,))
    conn.execute("INSERT INTO mailbox (address, name) VALUES (%s, 'Sales')", (SALES,))
    paths = []
    for n in range(12):
        path = tmp_path / ('m%d.eml' % n)
        path.write_bytes(make_message(message_id='<c%d@customer.example>' % n, subject='Question %d' % n,
                                      to=MAILBOX if n % 2 == 0 else SALES))
        paths.append(str(path))
    assert run_postdesk('replay', *paths).returncode == 0
    return {title: (ticket_id, mailbox_id) for ticket_id, title, mailbox_id in
            conn.execute('SELECT ticket_id, title, mailbox_id FROM ticket').fetchall()}


def test_tickets_asked_for_at_once_are_read_in_one_statement_per_scope_each_answer_its_own(
        db_url, two_mailboxes_with_tickets):
    tickets = two_mailboxes_with_tickets
    statements = []

    async def counted(conn, ids, scope):
        statements.append((sorted(ids), scope))
        return await views.ticket_views(conn, ids, scope)

    async def run():
        pools = Pools(db_url, 2, 5)
        await pools.open()
        try:
            reads = Coalesced(pools, counted)
            support = [ticket_id for ticket_id, mailbox_id in tickets.values() if mailbox_id == 1]
            everyone = [reads.get(ticket_id, None) for ticket_id, _ in tickets.values()]
            scoped = [reads.get(ticket_id, [1]) for ticket_id, _ in tickets.values()]
            return support, await asyncio.gather(*everyone, reads.get(10_000, None)), await asyncio.gather(*scoped)
        finally:
            await pools.close()
    support, everyone, scoped = asyncio.run(run())
    assert [t.title for t in everyone[:-1]] == list(tickets) and everyone[-1] is None
    assert [t.ticket_id if t else None for t in scoped] == [
        ticket_id if ticket_id in support else None for ticket_id, _ in tickets.values()]
    assert len(statements) == 2, statements          # one for all that were asked for together, one per scope


def test_many_concurrent_gets_answer_each_its_own_ticket_and_only_to_agents_who_may_see_it(
        db_url, tmp_path, conn, two_mailboxes_with_tickets):
    tickets = two_mailboxes_with_tickets
    tokens = {'anna': new_agent(conn, 'anna', MAILBOX), 'sven': new_agent(conn, 'sven', SALES)}
    server = Server(db_url, tmp_path)
    try:
        def get(job):
            login, title = job
            ticket_id, _ = tickets[title]
            with client(server, tokens[login]) as http:
                answer = http.get('/api/v1/Ticket/%d' % ticket_id)
            return job, answer.status_code, answer.json()
        jobs = [(login, title) for login in tokens for title in tickets] * 4
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(get, jobs))
    finally:
        server.stop()
    for (login, title), status, body in answers:
        ticket_id, mailbox_id = tickets[title]
        if (mailbox_id == 1) == (login == 'anna'):
            assert (status, body['TicketId'], body['Title']) == (200, ticket_id, title)
        else:
            assert (status, body['ErrorType']) == (404, 'NotFound')


# ------------------------------------------------------------------------------------------ admission

def test_at_most_the_limit_run_the_others_start_in_order_of_arrival():
    admission, started = Admission(limit=2), []
    for n in range(5):
        admission.enter(lambda n=n: started.append(n) or True)
    assert started == [0, 1] and admission.running == 2
    admission.leave()
    assert started == [0, 1, 2]
    admission.leave()
    admission.leave()
    assert started == [0, 1, 2, 3, 4] and admission.running == 2


def test_while_mail_is_being_received_fewer_run_and_a_request_whose_client_left_costs_no_turn():
    mail = [True]
    admission, started = Admission(limit=3, limit_for_mail=1, mail_active=lambda: mail[0]), []
    admission.enter(lambda: False)                         # its client has gone: not counted
    for n in range(3):
        admission.enter(lambda n=n: started.append(n) or True)
    assert started == [0] and admission.running == 1
    mail[0] = False
    admission.leave()                                      # the mail transaction is over: room for three
    assert started == [0, 1, 2] and admission.running == 2


def test_a_request_waiting_elsewhere_gives_its_turn_back_and_goes_on_before_new_ones():
    async def run():
        admission, order, inside = Admission(limit=1), [], asyncio.Event()
        turn = Turn(admission)
        admission.running = 1                              # the first request holds the only turn
        admission.enter(lambda: order.append('second') or True)

        async def first():
            async with turn.given_back():                  # it waits for a thread, say
                await inside.wait()
            order.append('first goes on')
        task = asyncio.ensure_future(first())
        await asyncio.sleep(0.01)
        assert order == ['second'] and admission.running == 1
        admission.enter(lambda: order.append('third') or True)
        inside.set()
        await asyncio.sleep(0.01)                          # the first waits for a turn again
        assert order == ['second'] and len(admission.resuming) == 1
        admission.leave()                                  # the second ends: the first goes on before the third
        await asyncio.wait_for(task, 5)
        assert order == ['second', 'first goes on'] and admission.running == 1
        turn.end()
        assert order == ['second', 'first goes on', 'third']
    asyncio.run(run())


def test_cancelled_while_waiting_for_a_turn_leaves_the_count_right_and_hurry_starts_everyone():
    async def run():
        admission = Admission(limit=1)
        first, second = Turn(admission), Turn(admission)
        admission.running = 2                              # two requests hold turns beyond the limit meanwhile

        async def waits():
            async with second.given_back():
                await asyncio.sleep(0)
        task = asyncio.ensure_future(waits())
        await asyncio.sleep(0.01)
        assert admission.running == 1 and len(admission.resuming) == 1
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        second.end()                                       # what admitted() does at the end: nothing more
        assert admission.running == 1
        started = []
        admission.enter(lambda: started.append(1) or True)
        admission.hurry()
        assert started == [1]
        first.end()
        assert admission.running == 1
    asyncio.run(run())


def test_the_admitted_app_ends_its_turn_whatever_the_app_does():
    async def run():
        admission = Admission(limit=1)

        async def failing(scope, receive, send):
            async with waiting_elsewhere(scope):
                await asyncio.sleep(0)
            raise RuntimeError('defect')
        admission.running = 1
        with pytest.raises(RuntimeError):
            await admitted(failing, Turn(admission))({}, None, None)
        assert admission.running == 0
    asyncio.run(run())


# ------------------------------------------------------------------------------------------ beside mail

def test_an_open_smtp_transaction_and_waiting_long_polls_do_not_hold_the_api(db_url, tmp_path, conn):
    conn.execute("INSERT INTO mailbox (address, name, is_default) VALUES (%s, 'Support', true)", (MAILBOX,))
    token = new_agent(conn, 'anna', MAILBOX)
    server = Server(db_url, tmp_path, {'POSTDESK_LONG_POLL': '6'})
    try:
        with client(server, token) as http:
            assert post_mail(http, make_message()).status_code == 200
        smtp = smtplib.SMTP('127.0.0.1', server.smtp_port, timeout=30)
        smtp.ehlo('relay.example')
        assert smtp.mail('anna@customer.example')[0] == 250 and smtp.rcpt(MAILBOX)[0] == 250
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            polls = [pool.submit(long_poll, server, token) for _ in range(3)]
            time.sleep(0.5)                                # the polls wait for events, the transaction is open
            with client(server, token) as http:
                started = time.monotonic()
                answer = http.get('/api/v1/Ticket/1')
                elapsed = time.monotonic() - started
            assert not any(poll.done() for poll in polls)
            assert answer.status_code == 200 and elapsed < 3, elapsed
            code, _ = smtp.data(make_message(message_id='<during@customer.example>'))
            assert code == 250
            smtp.quit()
            assert all(poll.result() >= 5 for poll in polls)
    finally:
        server.stop()


def long_poll(server: Server, token: str) -> float:
    """Seconds a second /meta/connect waited (no events come)."""
    with client(server, token) as http:
        def bayeux(*messages):
            answer = http.post('/api/v2/notifications', json=list(messages), timeout=30)
            assert answer.status_code == 200, answer.text
            return answer.json()
        [shake] = bayeux({'channel': '/meta/handshake', 'version': '1.0', 'supportedConnectionTypes': ['long-polling']})
        client_id = shake['clientId']
        bayeux({'channel': '/meta/subscribe', 'clientId': client_id, 'subscription': '/v2/me/*'})
        bayeux({'channel': '/meta/connect', 'clientId': client_id, 'connectionType': 'long-polling'})
        started = time.monotonic()
        bayeux({'channel': '/meta/connect', 'clientId': client_id, 'connectionType': 'long-polling'})
        return time.monotonic() - started


def stalled_upload(port: int) -> socket.socket:
    """A connection that sends the head of a POST with a body, then nothing."""
    stalled = socket.create_connection(('127.0.0.1', port), timeout=30)
    stalled.sendall(b'POST /api/v1/Agents/CustomerService/CreateTicketFromMailData HTTP/1.1\r\nHost: x\r\n'
                    b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n')
    return stalled


def test_uploads_that_stall_hold_no_turn_even_while_mail_is_being_received(db_url, tmp_path, conn):
    conn.execute("INSERT INTO mailbox (address, name, is_default) VALUES (%s, 'Support', true)", (MAILBOX,))
    token = new_agent(conn, 'anna', MAILBOX)
    server = Server(db_url, tmp_path)
    stalled = [stalled_upload(server.http_port) for _ in range(10)]
    try:
        with client(server, token) as http:
            assert post_mail(http, make_message()).status_code == 200
            smtp = smtplib.SMTP('127.0.0.1', server.smtp_port, timeout=30)
            smtp.ehlo('relay.example')
            assert smtp.mail('anna@customer.example')[0] == 250        # a transaction open: one turn only
            started = time.monotonic()
            answers = [http.get('/api/v1/Ticket/1').status_code for _ in range(20)]
            elapsed = time.monotonic() - started
            smtp.quit()
        assert answers == [200] * 20 and elapsed < 3, elapsed
    finally:
        for connection in stalled:
            connection.close()
        server.stop()


def test_requests_held_back_for_mail_go_on_as_soon_as_the_last_transaction_ends(db_url, tmp_path, conn):
    conn.execute("INSERT INTO mailbox (address, name, is_default) VALUES (%s, 'Support', true)", (MAILBOX,))
    token = new_agent(conn, 'anna', MAILBOX)
    server = Server(db_url, tmp_path)
    try:
        with client(server, token) as http:
            assert post_mail(http, make_message()).status_code == 200
        with psycopg.connect(db_url) as locker:
            locker.execute('LOCK TABLE ticket IN ACCESS EXCLUSIVE MODE')      # the ticket's read waits, in its turn
            smtp = smtplib.SMTP('127.0.0.1', server.smtp_port, timeout=30)
            smtp.ehlo('relay.example')
            assert smtp.mail('anna@customer.example')[0] == 250        # a transaction open: one turn only
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                ticket = pool.submit(status_of, server, '/api/v1/Ticket/1', token)
                time.sleep(0.5)
                health = pool.submit(status_of, server, '/healthz')
                time.sleep(0.5)
                assert not health.done()                       # held back behind the ticket's read
                smtp.quit()                                    # the last transaction ends: room for eight
                assert health.result(timeout=3) == 200 and not ticket.done()
                locker.rollback()
                assert ticket.result(timeout=10) == 200
    finally:
        server.stop()


def status_of(server: Server, path: str, token: str | None = None) -> int:
    with client(server, token) as http:
        return http.get(path).status_code
