"""Delivering replies from the outbox to a real SMTP relay on loopback: `postdesk deliver`, `outbox list`
and `outbox retry`, the customer's answer coming back onto the same ticket, a relay that is down, permanent and
temporary refusals, and two delivery processes on one outbox.

The relay is an aiosmtpd server started by each test on 127.0.0.1 and an ephemeral port; it records what it
receives and can refuse recipients with a chosen reply.
"""
from __future__ import annotations

import asyncio
import datetime
import email
import email.policy
import json
import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass

import pytest
from aiosmtpd.controller import Controller

from conftest import postdesk_executable
from mails import MAILBOX, make_message
from ticketing.model import Answer
from ticketing.operations.replies import send_reply

CUSTOMER = 'anna@customer.example'


# ---------------------------------------------------------------------------------------------- the relay

@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_to: tuple[str, ...]
    data: bytes

    @property
    def message(self) -> email.message.EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)


class Sink:
    """An SMTP handler that keeps every message it accepts. `refuse` maps a recipient to the reply it gets
    instead of 250 (it can be changed while the relay runs); `delay` slows down each DATA."""

    def __init__(self, refuse: dict[str, str] | None = None, delay: float = 0.0):
        self.refuse = dict(refuse or {})
        self.delay = delay
        self.received: list[Received] = []
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        refusal = self.refuse.get(address.lower())
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return '250 2.1.5 Ok'

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        with self.lock:
            self.received.append(Received(envelope.mail_from, tuple(envelope.rcpt_tos), bytes(envelope.content)))
            number = len(self.received)
        return '250 2.0.0 Ok: queued as SINK%05d' % number

    def messages(self) -> list[Received]:
        with self.lock:
            return list(self.received)


class Relay(Controller):
    """aiosmtpd's Controller on 127.0.0.1; port 0 takes a free port, found from the listening socket."""

    def __init__(self, handler: Sink, port: int = 0):
        super().__init__(handler, hostname='127.0.0.1', port=port, server_hostname='relay.test', ready_timeout=10)

    def _trigger_server(self):
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()

    @property
    def address(self) -> str:
        return '127.0.0.1:%d' % self.port


@pytest.fixture
def relays():
    """Start relays with `relays(sink, port=0)`; every one started is stopped after the test."""
    started: list[Relay] = []

    def start(sink: Sink, port: int = 0) -> Relay:
        relay = Relay(sink, port)
        relay.start()
        started.append(relay)
        return relay
    yield start
    for relay in started:
        relay.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------------------------------------- helpers

def lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def relay_env(address: str, **extra: str) -> dict:
    return {'POSTDESK_SMTP_RELAY': address, **extra}


def wait_for(predicate, timeout: float = 20, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError('timed out after %ss waiting for %s' % (timeout, getattr(predicate, '__name__', '?')))


def add_mailbox(run_postdesk) -> None:
    result = run_postdesk('mailbox', 'add', MAILBOX, '--name', 'Support', '--default')
    assert result.returncode == 0, result.stderr


def replay(run_postdesk, tmp_path, data: bytes, name: str) -> dict:
    path = tmp_path / name
    path.write_bytes(data)
    result = run_postdesk('replay', '--json', str(path))
    [outcome] = lines(result.stdout)
    return outcome


def question_ticket(run_postdesk, tmp_path) -> int:
    add_mailbox(run_postdesk)
    outcome = replay(run_postdesk, tmp_path, make_message(), 'question.eml')
    assert outcome['Outcome'] == 'new', outcome
    return outcome['TicketId']


def reply(run_postdesk, ticket_id: int, *args: str) -> int:
    """Queue a reply; its interaction id."""
    result = run_postdesk('reply', str(ticket_id), '--json', '--leave-open', *args)
    assert result.returncode == 0, result.stderr
    return int(json.loads(result.stdout)['response']['row']['id'])


def deliver_once(run_postdesk, address: str, **extra: str):
    return run_postdesk('deliver', '--once', extra_env=relay_env(address, **extra), timeout=60)


def row_of(conn, interaction_id: int) -> tuple:
    """(outbox_id, state, attempts, last_error, relay_reply, rcpt_to) of the reply's first outbox row."""
    return conn.execute('SELECT outbox_id, state, attempts, last_error, relay_reply, rcpt_to FROM outbox '
                        'WHERE interaction_id = %s ORDER BY outbox_id LIMIT 1', (interaction_id,)).fetchone()


def interaction_status(conn, interaction_id: int) -> str:
    return conn.execute('SELECT status FROM interaction WHERE interaction_id = %s', (interaction_id,)).fetchone()[0]


def interaction_audit(conn, interaction_id: int) -> list[tuple]:
    return conn.execute('SELECT status_before, status_after FROM status_audit '
                        "WHERE interaction_id = %s AND target = 'interaction' ORDER BY audit_id",
                        (interaction_id,)).fetchall()


def ticket(run_postdesk, ticket_id: int) -> dict:
    result = run_postdesk('ticket', 'show', str(ticket_id), '--json')
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def postdesk_process(db_url: str, tmp_path, *args: str, env: dict) -> subprocess.Popen:
    """A long-running or concurrent `postdesk` process (run_postdesk waits for its command to finish)."""
    full_env = dict(os.environ, DATABASE_URL=db_url, **env)
    full_env.pop('POSTDESK_CONFIG', None)
    return subprocess.Popen([postdesk_executable(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=full_env, cwd=tmp_path)


def finish(process: subprocess.Popen, timeout: float) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        raise AssertionError('postdesk %s did not finish in %ss:\n%s' % (process.args[1:], timeout, err))
    return process.returncode, out, err


def customer_answer(delivered: Received, message_id: str, keep_threading_headers: bool = True) -> bytes:
    """The customer's answer as a mail program builds it from the delivered reply: `Re:` added to the subject,
    the threading headers continued, the reply quoted with `> `."""
    original = delivered.message
    quoted = ''.join('> %s\n' % line for line in
                     original.get_body(preferencelist=('plain',)).get_content().splitlines())
    original_id = original['Message-ID'].strip()
    references = ' '.join(filter(None, [(original['References'] or '').strip(), original_id]))
    return make_message(
        subject='Re: ' + original['Subject'], sender='Anna Schmidt <%s>' % CUSTOMER, to=MAILBOX,
        message_id=message_id, in_reply_to=original_id if keep_threading_headers else None,
        references=references if keep_threading_headers else None,
        body='Thank you, it arrived.\n\n' + quoted)


# ---------------------------------------------------------------------------------------------- round trip

@pytest.mark.parametrize('subject_ref', [True, False], ids=['subject-ref', 'no-subject-ref'])
def test_delivered_reply_is_sent_and_customers_answer_threads_onto_the_ticket(run_postdesk, tmp_path, conn, relays,
                                                                             subject_ref):
    ticket_id = question_ticket(run_postdesk, tmp_path)
    reply_id = reply(run_postdesk, ticket_id, '--text', 'It left our warehouse today.',
                     *([] if subject_ref else ['--no-subject-ref']))
    sink = Sink()
    relay = relays(sink)

    result = deliver_once(run_postdesk, relay.address)
    assert result.returncode == 0, result.stderr
    [delivered] = sink.messages()
    assert (delivered.mail_from, delivered.rcpt_to) == (MAILBOX, (CUSTOMER,))
    outbox_id, state, attempts, last_error, relay_reply, _ = row_of(conn, reply_id)
    assert (state, attempts, last_error) == ('sent', 1, None)
    assert relay_reply == '250 2.0.0 Ok: queued as SINK00001'
    stored = conn.execute('SELECT data FROM outbox WHERE outbox_id = %s', (outbox_id,)).fetchone()[0]
    assert bytes(stored) == delivered.data
    assert interaction_status(conn, reply_id) == 'Sent'
    assert interaction_audit(conn, reply_id) == [(None, 'Unsent'), ('Unsent', 'Sent')]
    subject = delivered.message['Subject']
    assert (('[ref#: %d-%d]' % (ticket_id, reply_id)) in subject) == subject_ref

    answer = replay(run_postdesk, tmp_path, customer_answer(delivered, '<answer-1@customer.example>'), 'answer.eml')
    assert (answer['Outcome'], answer['TicketId']) == ('followup', ticket_id)
    assert answer['ThreadRule'] == 'in-reply-to'
    again = deliver_once(run_postdesk, relay.address)
    assert again.returncode == 0 and len(sink.messages()) == 1          # nothing is sent twice


def test_a_delivery_changes_the_ticket_its_last_changed_and_so_its_etag(run_postdesk, tmp_path, conn, relays):
    """The entity lists its messages' statuses: a reply going from Unsent to Sent is a change of the ticket (an
    incremental sync by LastChanged sees it, and an ETag taken before it is stale)."""
    ticket_id = question_ticket(run_postdesk, tmp_path)
    reply(run_postdesk, ticket_id, '--text', 'It left our warehouse today.')
    before = conn.execute('SELECT last_changed FROM ticket WHERE ticket_id = %s', (ticket_id,)).fetchone()[0]
    result = deliver_once(run_postdesk, relays(Sink()).address)
    assert result.returncode == 0, result.stderr
    shown = json.loads(run_postdesk('ticket', 'show', str(ticket_id), '--json').stdout)
    assert [m['Status'] for m in shown['Messages']] == ['Received', 'Sent']
    assert datetime.datetime.fromisoformat(shown['LastChanged']) > before


def test_answer_without_threading_headers_threads_by_subject_reference(run_postdesk, tmp_path, conn, relays):
    ticket_id = question_ticket(run_postdesk, tmp_path)
    reply(run_postdesk, ticket_id, '--text', 'It left our warehouse today.')
    sink = Sink()
    relay = relays(sink)
    assert deliver_once(run_postdesk, relay.address).returncode == 0
    [delivered] = sink.messages()
    data = customer_answer(delivered, '<answer-2@customer.example>', keep_threading_headers=False)
    assert b'In-Reply-To' not in data and b'References' not in data
    answer = replay(run_postdesk, tmp_path, data, 'answer.eml')
    assert (answer['Outcome'], answer['TicketId'], answer['ThreadRule']) == ('followup', ticket_id, 'subject-ref')


# ------------------------------------------------------------------------------------------------ relay down

def test_relay_down_keeps_reply_queued_and_a_running_deliverer_sends_it_once_when_back(
        run_postdesk, db_url, tmp_path, conn, relays):
    ticket_id = question_ticket(run_postdesk, tmp_path)
    reply_id = reply(run_postdesk, ticket_id, '--text', 'It left our warehouse today.')
    port = free_port()

    down = deliver_once(run_postdesk, '127.0.0.1:%d' % port, POSTDESK_RETRY_BASE='0.5')
    assert down.returncode == 1, (down.stdout, down.stderr)
    outbox_id, state, attempts, last_error, _, _ = row_of(conn, reply_id)
    assert (state, attempts) == ('queued', 1)
    assert last_error and str(port) in last_error
    assert interaction_status(conn, reply_id) == 'Unsent'

    sink = Sink()
    relays(sink, port)
    process = postdesk_process(db_url, tmp_path, 'deliver',
                               env=relay_env('127.0.0.1:%d' % port, POSTDESK_RETRY_BASE='0.5'))
    try:
        wait_for(lambda: row_of(conn, reply_id)[1] == 'sent', timeout=30)
        time.sleep(2.5)                   # several polls of the worker: nothing is sent a second time
        assert process.poll() is None, 'postdesk deliver stopped by itself'
        process.send_signal(signal.SIGTERM)
        code, out, err = finish(process, timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert code == 0, err
    [delivered] = sink.messages()
    assert delivered.rcpt_to == (CUSTOMER,)
    assert row_of(conn, reply_id)[:3] == (outbox_id, 'sent', 2)
    assert interaction_status(conn, reply_id) == 'Sent'


# -------------------------------------------------------------------------------------------- refusals

def test_permanent_refusal_fails_and_flags_then_outbox_retry_sends_it(run_postdesk, tmp_path, conn, relays):
    ticket_id = question_ticket(run_postdesk, tmp_path)
    reply_id = reply(run_postdesk, ticket_id, '--text', 'It left our warehouse today.')
    sink = Sink(refuse={CUSTOMER: '550 5.1.1 no such user'})
    relay = relays(sink)

    failed = deliver_once(run_postdesk, relay.address)
    assert failed.returncode == 1, (failed.stdout, failed.stderr)
    assert sink.messages() == []
    outbox_id, state, attempts, last_error, _, _ = row_of(conn, reply_id)
    assert (state, attempts) == ('failed', 1) and '550 5.1.1 no such user' in last_error
    assert interaction_status(conn, reply_id) == 'Failed'
    assert interaction_audit(conn, reply_id)[-1] == ('Unsent', 'Failed')
    entity = ticket(run_postdesk, ticket_id)
    assert entity['Flagged'] and '550' in entity['Flagged']

    listing = run_postdesk('outbox', 'list', '--json')
    assert listing.returncode == 0, listing.stderr
    [entry] = lines(listing.stdout)
    assert (entry['OutboxId'], entry['State'], entry['TicketId'], entry['InteractionId'], entry['To']) == (
        outbox_id, 'failed', ticket_id, reply_id, [CUSTOMER])
    assert '550' in entry['LastError']

    retried = run_postdesk('outbox', 'retry', str(outbox_id), '--json')
    assert retried.returncode == 0, retried.stderr
    [entry] = lines(retried.stdout)
    assert (entry['OutboxId'], entry['State']) == (outbox_id, 'queued')
    assert row_of(conn, reply_id)[1] == 'queued'

    sink.refuse.clear()
    sent = deliver_once(run_postdesk, relay.address)
    assert sent.returncode == 0, (sent.stdout, sent.stderr)
    [delivered] = sink.messages()
    assert delivered.rcpt_to == (CUSTOMER,)
    assert row_of(conn, reply_id)[1] == 'sent'
    assert interaction_status(conn, reply_id) == 'Sent'
    assert interaction_audit(conn, reply_id) == [(None, 'Unsent'), ('Unsent', 'Failed'), ('Failed', 'Unsent'),
                                                 ('Unsent', 'Sent')]
    assert lines(run_postdesk('outbox', 'list', '--json').stdout) == []

    again = run_postdesk('outbox', 'retry', str(outbox_id))           # a sent row is never sent a second time
    assert again.returncode == 0 and 'already sent' in again.stdout
    assert deliver_once(run_postdesk, relay.address).returncode == 0
    assert len(sink.messages()) == 1 and row_of(conn, reply_id)[1] == 'sent'
    assert run_postdesk('outbox', 'retry', '99999').returncode == 2


def test_temporary_refusal_of_one_recipient_queues_a_row_for_it_alone(run_postdesk, tmp_path, conn, relays):
    ticket_id = question_ticket(run_postdesk, tmp_path)
    reply_id = reply(run_postdesk, ticket_id, '--text', 'Both of you, please.', '--cc', 'bob@customer.example')
    sink = Sink(refuse={'bob@customer.example': '450 4.2.1 mailbox busy, try later'})
    relay = relays(sink)

    result = deliver_once(run_postdesk, relay.address)
    assert result.returncode == 0, (result.stdout, result.stderr)
    [delivered] = sink.messages()
    assert delivered.rcpt_to == (CUSTOMER,)
    rows = conn.execute('SELECT outbox_id, state, rcpt_to, attempts, last_error, message_id, data FROM outbox '
                        'WHERE interaction_id = %s ORDER BY outbox_id', (reply_id,)).fetchall()
    assert [(r[1], r[2]) for r in rows] == [('sent', [CUSTOMER, 'bob@customer.example']),
                                            ('queued', ['bob@customer.example'])]
    copy = rows[1]
    assert copy[3] == 1
    assert copy[5] == rows[0][5] and bytes(copy[6]) == delivered.data

    sink.refuse.clear()
    assert run_postdesk('outbox', 'retry', str(copy[0])).returncode == 0
    assert deliver_once(run_postdesk, relay.address).returncode == 0
    assert [m.rcpt_to for m in sink.messages()] == [(CUSTOMER,), ('bob@customer.example',)]
    assert conn.execute("SELECT count(*) FROM outbox WHERE state <> 'sent'").fetchone()[0] == 0


def test_row_waiting_for_a_temporarily_refused_recipient_shows_the_refusal(run_postdesk, tmp_path, conn, relays):
    ticket_id = question_ticket(run_postdesk, tmp_path)
    reply(run_postdesk, ticket_id, '--text', 'Both of you, please.', '--cc', 'bob@customer.example')
    sink = Sink(refuse={'bob@customer.example': '450 4.2.1 mailbox busy, try later'})
    relay = relays(sink)
    assert deliver_once(run_postdesk, relay.address).returncode == 0
    listing = run_postdesk('outbox', 'list', '--json')
    [waiting] = lines(listing.stdout)
    assert (waiting['State'], waiting['To']) == ('queued', ['bob@customer.example'])
    assert '450 4.2.1 mailbox busy' in waiting['LastError'], waiting['LastError']


# ------------------------------------------------------------------------------------------ concurrency

def test_two_delivery_processes_send_each_of_500_queued_replies_exactly_once(run_postdesk, db_url, tmp_path, conn,
                                                                           relays):
    add_mailbox(run_postdesk)
    ticket_ids = []
    for number in range(5):
        outcome = replay(run_postdesk, tmp_path, make_message(
            subject='Question %d' % number, message_id='<q%d@customer.example>' % number,
            sender='Customer %d <c%d@customer.example>' % (number, number)), 'q%d.eml' % number)
        ticket_ids.append(outcome['TicketId'])
    for number in range(500):
        send_reply(conn, Answer(ticket_id=ticket_ids[number % 5], body_html='<p>Answer %d</p>' % number,
                                leave_open=True))
    assert conn.execute("SELECT count(*) FROM outbox WHERE state = 'queued'").fetchone()[0] == 500

    sink = Sink(delay=0.01)            # the sending takes long enough for the processes to overlap
    relay = relays(sink)
    env = relay_env(relay.address)
    processes = [postdesk_process(db_url, tmp_path, 'deliver', '--once', '--workers', '2', env=env),
                 postdesk_process(db_url, tmp_path, 'deliver', '--once', '--workers', '1', env=env)]
    started = time.monotonic()
    try:
        results = [finish(process, timeout=max(1.0, 60 - (time.monotonic() - started))) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(10)
    for code, out, err in results:
        assert code == 0, err
    sent_counts = [int(out.strip().splitlines()[-1].split()[1].rstrip(',')) for _, out, _ in results]
    assert sum(sent_counts) == 500, [out.splitlines()[-1] for _, out, _ in results]
    assert all(count > 0 for count in sent_counts), sent_counts     # both processes really took part

    received = sink.messages()
    assert len(received) == 500
    delivered_ids = {m.message['Message-ID'].strip('<>') for m in received}
    assert len(delivered_ids) == 500
    stored = conn.execute('SELECT state, message_id FROM outbox').fetchall()
    assert {state for state, _ in stored} == {'sent'}
    assert {mid for _, mid in stored} == delivered_ids
    assert conn.execute("SELECT count(*) FROM interaction WHERE direction = 'outbound' AND status = 'Sent'"
                        ).fetchone()[0] == 500



def test_serve_delivers_the_outbox_when_a_relay_is_configured(run_postdesk, db_url, tmp_path, conn, relays):
    from test_serve import Server, wait_for
    ticket_id = question_ticket(run_postdesk, tmp_path)
    sink = Sink()
    relay = relays(sink)
    server = Server(db_url, tmp_path, relay_env(relay.address))
    try:
        reply(run_postdesk, ticket_id, '--text', 'Sent by the serving process.')
        wait_for(lambda: sink.messages(), timeout=30)
        assert wait_for(lambda: conn.execute("SELECT state FROM outbox").fetchone()[0] == 'sent', timeout=10)
    finally:
        assert server.stop() == 0, server.lines[-10:]
    assert len(sink.messages()) == 1
    assert any('delivering replies to 127.0.0.1:%d' % relay.port in line for line in server.lines)


# ----------------------------------------------------------------- threading back, relay refusals, giving up

def test_customer_answer_with_only_the_fixed_ticket_reference_threads_back(run_postdesk, tmp_path, conn, relays):
    """Without the subject reference, the fixed per-ticket reference in References is what brings an answer
    home when a mail program keeps only the first References entry."""
    ticket_id = question_ticket(run_postdesk, tmp_path)
    reply(run_postdesk, ticket_id, '--text', 'It left our warehouse today.', '--no-subject-ref')
    sink = Sink()
    relay = relays(sink)
    assert deliver_once(run_postdesk, relay.address).returncode == 0
    [delivered] = sink.messages()
    first_reference = delivered.message['References'].split()[0]
    assert first_reference.startswith('<ticket-%d-' % ticket_id)
    data = make_message(subject='Re: ' + delivered.message['Subject'], message_id='<answer-3@customer.example>',
                        references=first_reference, body='Thanks.\n')
    answer = replay(run_postdesk, tmp_path, data, 'answer.eml')
    assert (answer['Outcome'], answer['TicketId'], answer['ThreadRule']) == ('followup', ticket_id, 'references')


class RefuseDataCommand(Controller):
    """A relay that refuses the DATA command itself (no 354), as some policy servers do."""

    def factory(self):
        from aiosmtpd.smtp import SMTP

        class Refusing(SMTP):
            async def smtp_DATA(self, arg):
                await self.push('554 5.7.1 Message refused by policy')
        return Refusing(self.handler)


def test_relay_refusing_the_data_command_with_5xx_fails_the_reply_at_once(run_postdesk, tmp_path, conn):
    ticket_id = question_ticket(run_postdesk, tmp_path)
    reply_id = reply(run_postdesk, ticket_id, '--text', 'Here you are.')
    port = free_port()
    relay = RefuseDataCommand(Sink(), hostname='127.0.0.1', port=port)
    relay.start()
    try:
        result = deliver_once(run_postdesk, '127.0.0.1:%d' % port)
    finally:
        relay.stop()
    assert result.returncode == 1
    _, state, attempts, last_error, _, _ = row_of(conn, reply_id)
    assert (state, attempts) == ('failed', 1) and '554 5.7.1' in last_error
    assert interaction_status(conn, reply_id) == 'Failed'
    assert ticket(run_postdesk, ticket_id)['Flagged']


def test_a_relay_reply_postgresql_cannot_store_does_not_send_the_message_again(run_postdesk, tmp_path, conn, relays):
    class OddReply(Sink):
        async def handle_DATA(self, server, session, envelope):
            await super().handle_DATA(server, session, envelope)
            return '250 ok queued\x00X'
    ticket_id = question_ticket(run_postdesk, tmp_path)
    reply_id = reply(run_postdesk, ticket_id, '--text', 'Here you are.')
    sink = OddReply()
    relay = relays(sink)
    assert deliver_once(run_postdesk, relay.address).returncode == 0
    assert deliver_once(run_postdesk, relay.address).returncode == 0
    assert len(sink.messages()) == 1
    assert row_of(conn, reply_id)[1] == 'sent'


def test_a_reply_the_relay_never_takes_fails_after_max_age(run_postdesk, tmp_path, conn):
    ticket_id = question_ticket(run_postdesk, tmp_path)
    reply_id = reply(run_postdesk, ticket_id, '--text', 'Here you are.')
    down = '127.0.0.1:%d' % free_port()
    settings = {'POSTDESK_RETRY_BASE': '0.2', 'POSTDESK_MAX_DELIVERY_AGE': '2'}
    assert deliver_once(run_postdesk, down, **settings).returncode == 1
    assert row_of(conn, reply_id)[1] == 'queued'
    time.sleep(2.2)
    assert deliver_once(run_postdesk, down, **settings).returncode == 1
    _, state, attempts, last_error, _, _ = row_of(conn, reply_id)
    assert (state, attempts) == ('failed', 2) and last_error.startswith('gave up after 2 attempts')
    assert interaction_status(conn, reply_id) == 'Failed'
    assert ticket(run_postdesk, ticket_id)['Flagged']


def test_retries_back_off_exponentially_up_to_the_maximum():
    from ticketing.outbox.worker import backoff_seconds
    assert [backoff_seconds(n, 60, 3600) for n in (1, 2, 3, 4, 7, 20)] == [60, 120, 240, 480, 3600, 3600]
