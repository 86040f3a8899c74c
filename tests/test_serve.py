"""`postdesk serve` on real sockets, against a real PostgreSQL."""
from __future__ import annotations

import hashlib
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import threading
import time

import psycopg
import pytest
from psycopg import sql

from conftest import postdesk_executable
from mails import MAILBOX, make_message


class Server:
    """A `postdesk serve` process on ephemeral ports, its log collected line by line."""

    def __init__(self, db_url: str, tmp_path, extra_env: dict | None = None, args=()):
        env = {'DATABASE_URL': db_url, 'PATH': '/usr/bin:/bin', 'POSTDESK_DATABASE_TIMEOUT': '2',
               'POSTDESK_SHUTDOWN_GRACE': '5', **(extra_env or {})}
        command = ['serve', '--smtp', '127.0.0.1:0', '--lmtp', '127.0.0.1:0', '--http', '127.0.0.1:0', *args]
        self.process = subprocess.Popen(
            [postdesk_executable(), *command],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        on = {kind: _last_value(command, '--' + kind.lower()) != 'off' for kind in ('SMTP', 'LMTP', 'HTTP')}
        self.smtp_port = self._port('SMTP') if on['SMTP'] else None
        self.lmtp_port = self._port('LMTP') if on['LMTP'] else None
        self.http_port = self._port('HTTP') if on['HTTP'] else None

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line.rstrip('\n'))

    def _port(self, kind: str, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                found = re.search(r'%s listening on 127\.0\.0\.1:(\d+)' % kind, line)
                if found:
                    return int(found.group(1))
            if self.process.poll() is not None:
                raise AssertionError('serve exited: %s' % '\n'.join(self.lines))
            time.sleep(0.05)
        raise AssertionError('serve did not start: %s' % '\n'.join(self.lines))

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self.reader.join(5)


def _last_value(command: list[str], option: str) -> str | None:
    values = [command[i + 1] for i, arg in enumerate(command[:-1]) if arg == option]
    return values[-1] if values else None


@pytest.fixture
def mailbox(conn):
    conn.execute("INSERT INTO mailbox (address, name, is_default) VALUES (%s, 'Support', true)", (MAILBOX,))
    conn.execute("INSERT INTO mailbox (address, name) VALUES ('sales@helpdesk.example', 'Sales')")


@pytest.fixture
def server(db_url, tmp_path, mailbox):
    running = Server(db_url, tmp_path)
    yield running
    running.stop()


def wait_for(predicate, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError('timed out waiting')


def tickets_for(conn, message_id: str):
    return conn.execute('SELECT ticket_id, mailbox_id FROM interaction WHERE message_id = %s ORDER BY mailbox_id',
                        (message_id,)).fetchall()


def lmtp_dialogue(port: int, commands: list) -> list[bytes]:
    """Send commands one by one on a raw socket; return every reply line. A command given as (bytes, n) is
    answered by n replies (LMTP answers the end of DATA once per accepted recipient)."""
    with socket.create_connection(('127.0.0.1', port), timeout=10) as sock:
        reader = sock.makefile('rb')
        replies = [reader.readline()]
        for command in commands:
            command, count = command if isinstance(command, tuple) else (command, 1)
            sock.sendall(command)
            for _ in range(count):
                replies.extend(_read_reply(reader))
        return replies


def _read_reply(reader) -> list[bytes]:
    lines = [reader.readline()]
    while lines[-1][3:4] == b'-':
        lines.append(reader.readline())
    return lines


def test_accepted_message_is_stored_with_its_envelope_and_becomes_a_ticket(server, conn):
    with smtplib.SMTP('127.0.0.1', server.smtp_port, local_hostname='mx.customer.example') as client:
        refused = client.sendmail('anna@customer.example', [MAILBOX], make_message())
    assert refused == {}
    raw = conn.execute('SELECT data, envelope_from, envelope_to, peer, helo, source FROM raw_message').fetchone()
    data, sender, rcpt, peer, helo, source = raw
    assert (sender, rcpt, helo, source) == ('anna@customer.example', [MAILBOX], 'mx.customer.example', 'smtp')
    assert peer.startswith('127.0.0.1:')
    assert bytes(data).startswith(b'Received: from mx.customer.example ([127.0.0.1])')
    assert b'with ESMTP' in bytes(data)[:300]
    assert wait_for(lambda: tickets_for(conn, 'q1@customer.example'))
    assert wait_for(lambda: any('outcome=new ticket=' in line and 'message-id=<q1@customer.example>' in line
                                and 'from=<anna@customer.example>' in line and 'ms=' in line
                                for line in server.lines))


def test_unknown_recipient_is_refused_at_rcpt_with_550(server, conn):
    with smtplib.SMTP('127.0.0.1', server.smtp_port) as client:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            client.sendmail('anna@customer.example', ['nobody@helpdesk.example'], make_message())
        code, text = refused.value.recipients['nobody@helpdesk.example']
    assert code == 550 and text.startswith(b'5.1.1')
    assert conn.execute('SELECT count(*) FROM raw_message').fetchone()[0] == 0


def test_other_domains_are_never_relayed(server):
    with smtplib.SMTP('127.0.0.1', server.smtp_port) as client:
        client.ehlo()
        client.mail('anna@customer.example')
        code, _ = client.rcpt('victim@elsewhere.example')
    assert code == 550


def test_size_is_advertised_and_oversize_message_gets_552(db_url, tmp_path, mailbox, conn):
    running = Server(db_url, tmp_path, {'POSTDESK_MAX_MESSAGE_BYTES': '2000'})
    try:
        big = make_message(body='x' * 5000 + '\n')
        with smtplib.SMTP('127.0.0.1', running.smtp_port) as client:
            client.ehlo()
            assert client.has_extn('size') and client.esmtp_features['size'] == '2000'
            with pytest.raises(smtplib.SMTPSenderRefused) as declared:     # SIZE= given at MAIL FROM
                client.sendmail('anna@customer.example', [MAILBOX], big)
            assert declared.value.smtp_code == 552
        replies = lmtp_dialogue(running.smtp_port, [      # no SIZE parameter: refused after the data
            b'EHLO x\r\n', b'MAIL FROM:<anna@customer.example>\r\n', b'RCPT TO:<%s>\r\n' % MAILBOX.encode(),
            b'DATA\r\n', big.replace(b'\n', b'\r\n') + b'\r\n.\r\n'])
        assert replies[-1].startswith(b'552 5.3.4')
    finally:
        running.stop()
    assert conn.execute('SELECT count(*) FROM raw_message').fetchone()[0] == 0


def _set_database_available(server_url: str, db_url: str, available: bool) -> None:
    name = psycopg.conninfo.conninfo_to_dict(db_url)['dbname']
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL('ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}').format(
            sql.Identifier(name), sql.SQL('true' if available else 'false')))
        if not available:
            admin.execute('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s', (name,))


def test_database_unreachable_gives_451_and_a_later_retry_is_stored_once(server, server_url, db_url):
    message = make_message(message_id='<retry-me@customer.example>')
    _set_database_available(server_url, db_url, False)
    try:
        with smtplib.SMTP('127.0.0.1', server.smtp_port) as client:
            for _ in range(3):
                with pytest.raises(smtplib.SMTPDataError) as failed:
                    client.sendmail('anna@customer.example', [MAILBOX], message)
                assert failed.value.smtp_code == 451
                assert failed.value.smtp_error.startswith(b'4.3.0')
    finally:
        _set_database_available(server_url, db_url, True)
    with smtplib.SMTP('127.0.0.1', server.smtp_port) as client:
        assert wait_for(lambda: _try_send(client, message), timeout=30)
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert wait_for(lambda: tickets_for(conn, 'retry-me@customer.example'))
        assert conn.execute('SELECT count(*) FROM raw_message').fetchone()[0] == 1
        assert conn.execute('SELECT count(*) FROM interaction').fetchone()[0] == 1
    assert any('outcome=451' in line for line in server.lines)


def _try_send(client, message) -> bool:
    try:
        client.sendmail('anna@customer.example', [MAILBOX], message)
        return True
    except smtplib.SMTPDataError as error:
        assert error.smtp_code == 451
        return False


def test_lmtp_answers_each_recipient(server, conn):
    message = make_message(message_id='<two-boxes@customer.example>', to='%s, sales@helpdesk.example' % MAILBOX)
    data = message.replace(b'\r\n', b'\n').replace(b'\n', b'\r\n') + b'\r\n.\r\n'
    replies = lmtp_dialogue(server.lmtp_port, [
        b'LHLO mx.test\r\n', b'MAIL FROM:<anna@customer.example>\r\n', b'RCPT TO:<%s>\r\n' % MAILBOX.encode(),
        b'RCPT TO:<nobody@helpdesk.example>\r\n', b'RCPT TO:<sales@helpdesk.example>\r\n', b'DATA\r\n', (data, 2),
        b'NOOP\r\n'])
    codes = [line[:3] for line in replies]
    lhlo = 1 + next(i for i, line in enumerate(replies[1:]) if line[3:4] == b' ')   # end of the LHLO reply
    assert codes[lhlo + 1:] == [b'250', b'250', b'550', b'250', b'354', b'250', b'250', b'250']
    per_recipient = replies[-3:-1]
    assert MAILBOX.encode() in per_recipient[0] and b'sales@helpdesk.example' in per_recipient[1]
    assert conn.execute('SELECT count(*) FROM raw_message').fetchone()[0] == 1
    stored = wait_for(lambda: len(tickets_for(conn, 'two-boxes@customer.example')) == 2 and
                      tickets_for(conn, 'two-boxes@customer.example'))
    assert stored[0][0] != stored[1][0], 'one ticket per mailbox'


def test_too_many_sessions_get_421(db_url, tmp_path, mailbox):
    running = Server(db_url, tmp_path, {'POSTDESK_MAX_SESSIONS': '2'})
    try:
        held = [socket.create_connection(('127.0.0.1', running.smtp_port), timeout=5) for _ in range(2)]
        for sock in held:
            assert sock.makefile('rb').readline().startswith(b'220')
        with socket.create_connection(('127.0.0.1', running.smtp_port), timeout=5) as third:
            assert third.makefile('rb').readline().startswith(b'421')
        for sock in held:
            sock.close()
    finally:
        running.stop()


def test_sigterm_during_a_burst_keeps_every_message_that_got_250(db_url, tmp_path, mailbox):
    running = Server(db_url, tmp_path)
    accepted: list[str] = []
    errors: list[str] = []

    def sender(worker: int):
        try:
            with smtplib.SMTP('127.0.0.1', running.smtp_port, timeout=10) as client:
                for i in range(400):
                    message_id = 'burst-%d-%d@customer.example' % (worker, i)
                    client.sendmail('anna@customer.example', [MAILBOX],
                                    make_message(message_id='<%s>' % message_id, subject='burst %d %d' % (worker, i)))
                    accepted.append(message_id)
        except (smtplib.SMTPException, OSError) as error:
            errors.append(repr(error))

    threads = [threading.Thread(target=sender, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(accepted) >= 40)
    exit_status = running.stop()
    for thread in threads:
        thread.join(30)
    assert exit_status == 0, running.lines[-20:]
    assert errors, 'the burst should have been cut short by the shutdown'
    assert 40 <= len(accepted) < 1600
    with psycopg.connect(db_url, autocommit=True) as conn:
        stored = {mid for (mid,) in conn.execute('SELECT message_id FROM interaction').fetchall()}
        pending = conn.execute("SELECT count(*) FROM raw_message WHERE state = 'pending'").fetchone()[0]
    assert set(accepted) <= stored
    assert pending == 0, 'the workers finish the spool before the process exits'


def test_the_same_message_delivered_twice_is_stored_once(server, conn):
    """What a crash between commit and reply does at worst: the MTA delivers again; the copy is a duplicate."""
    message = make_message(message_id='<twice@customer.example>')
    for _ in range(2):
        with smtplib.SMTP('127.0.0.1', server.smtp_port) as client:
            client.sendmail('anna@customer.example', [MAILBOX], message)
    wait_for(lambda: conn.execute("SELECT count(*) FROM raw_message WHERE state = 'done'").fetchone()[0] == 2)
    assert conn.execute('SELECT count(*) FROM interaction').fetchone()[0] == 1
    assert wait_for(lambda: any('message-id=<twice@customer.example> outcome=duplicate' in line
                                for line in server.lines))


def test_idle_sessions_are_closed(db_url, tmp_path, mailbox):
    running = Server(db_url, tmp_path, {'POSTDESK_IDLE_TIMEOUT': '1'})
    try:
        with socket.create_connection(('127.0.0.1', running.smtp_port), timeout=10) as sock:
            reader = sock.makefile('rb')
            assert reader.readline().startswith(b'220')
            started = time.monotonic()
            assert reader.read().startswith(b'421 4.4.2 '), 'the server says why it closes the idle connection'
            assert time.monotonic() - started < 8
    finally:
        running.stop()
    assert [line for line in running.lines if 'outcome=421 reason=no data for 1 s' in line]


def test_starttls_with_a_configured_certificate(db_url, tmp_path, mailbox, conn):
    cert, key = _make_certificate(tmp_path)
    running = Server(db_url, tmp_path, {'POSTDESK_TLS_CERT': cert, 'POSTDESK_TLS_KEY': key})
    try:
        with smtplib.SMTP('127.0.0.1', running.smtp_port) as client:
            client.ehlo()
            assert client.has_extn('starttls')
        with _tls_client(running.smtp_port, cert) as client:
            client.sendmail('anna@customer.example', [MAILBOX], make_message(message_id='<tls@customer.example>'))
    finally:
        assert running.stop() == 0
    data = bytes(conn.execute('SELECT data FROM raw_message').fetchone()[0])
    assert b'with ESMTPS' in data.split(b'\r\n\r\n', 1)[0]


def _make_certificate(tmp_path) -> tuple[str, str]:
    openssl = shutil.which('openssl')
    if openssl is None:
        pytest.skip('openssl is needed to make a test certificate')
    cert, key = tmp_path / 'cert.pem', tmp_path / 'key.pem'
    subprocess.run([openssl, 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost',
                    '-keyout', str(key), '-out', str(cert)], check=True, capture_output=True)
    return str(cert), str(key)


def _tls_client(port: int, cert: str) -> smtplib.SMTP:
    context = ssl.create_default_context(cafile=cert)
    context.check_hostname = False          # the test certificate names localhost, we dial 127.0.0.1
    client = smtplib.SMTP('127.0.0.1', port, timeout=10)
    client.starttls(context=context)
    return client


def test_undecodable_envelope_bytes_are_stored_and_do_not_stop_intake(server, conn):
    message = make_message(message_id='<odd-envelope@customer.example>').replace(b'\n', b'\r\n') + b'\r\n.\r\n'
    for _ in range(3):        # more than there are spool writers: none of them may die
        replies = lmtp_dialogue(server.smtp_port, [
            b'EHLO \xff\xfe.example\r\n', b'MAIL FROM:<odd@customer.example>\r\n',
            b'RCPT TO:<%s>\r\n' % MAILBOX.encode(), b'DATA\r\n', message])
        assert replies[-1].startswith(b'250'), replies[-1]
        refused = lmtp_dialogue(server.smtp_port, [b'EHLO x.example\r\n', b'MAIL FROM:<\xff\xfeodd@c.example>\r\n'])
        assert refused[-1].startswith(b'550 5.1.7'), refused[-1]
    with smtplib.SMTP('127.0.0.1', server.smtp_port, timeout=10) as client:
        assert client.sendmail('anna@customer.example', [MAILBOX], make_message(message_id='<after@c.example>')) == {}
    helos = {row[0] for row in conn.execute('SELECT helo FROM raw_message').fetchall()}
    assert '\ufffd\ufffd.example' in helos
    assert wait_for(lambda: tickets_for(conn, 'after@c.example'))


def test_a_message_that_cannot_be_stored_is_quarantined_and_the_next_one_still_becomes_a_ticket(server, conn):
    """A From address longer than PostgreSQL can index fails a statement (not the connection): that message goes
    to the quarantine instead of blocking the spool."""
    incompressible = ''.join(hashlib.sha256(b'%d' % i).hexdigest() for i in range(200))      # 12,800 characters
    folded_local_part = '\r\n '.join(incompressible[i:i + 900] for i in range(0, len(incompressible), 900))
    poison = ('From: Anna <%s@customer.example>\r\nTo: %s\r\nSubject: poison\r\n'
              'Message-ID: <poison@customer.example>\r\n\r\nhello\r\n' % (folded_local_part, MAILBOX)).encode()
    with smtplib.SMTP('127.0.0.1', server.smtp_port, timeout=10) as client:
        client.sendmail('anna@customer.example', [MAILBOX], poison)
        client.sendmail('anna@customer.example', [MAILBOX], make_message(message_id='<good@customer.example>'))
    assert wait_for(lambda: tickets_for(conn, 'good@customer.example'))
    held = wait_for(lambda: conn.execute('SELECT reason, raw_id FROM quarantine').fetchall())
    assert len(held) == 1 and held[0][1] is not None
    assert conn.execute("SELECT count(*) FROM raw_message WHERE state = 'pending'").fetchone()[0] == 0


def test_lmtp_oversize_message_gets_one_552_per_recipient(db_url, tmp_path, mailbox):
    running = Server(db_url, tmp_path, {'POSTDESK_MAX_MESSAGE_BYTES': '2000'})
    try:
        big = make_message(body='x' * 5000 + '\n').replace(b'\n', b'\r\n') + b'\r\n.\r\n'
        replies = lmtp_dialogue(running.lmtp_port, [
            b'LHLO mx.test\r\n', b'MAIL FROM:<anna@customer.example>\r\n', b'RCPT TO:<%s>\r\n' % MAILBOX.encode(),
            b'RCPT TO:<sales@helpdesk.example>\r\n', b'DATA\r\n', (big, 2)])
    finally:
        running.stop()
    assert [line[:9] for line in replies[-2:]] == [b'552 5.3.4', b'552 5.3.4']


def test_a_message_without_message_id_delivered_twice_is_stored_once(server, conn):
    """postdesk's own Received: header (which differs each time) is not part of the message's identity."""
    message = make_message(message_id=None)
    for _ in range(2):
        with smtplib.SMTP('127.0.0.1', server.smtp_port, timeout=10) as client:
            client.sendmail('anna@customer.example', [MAILBOX], message)
    wait_for(lambda: conn.execute("SELECT count(*) FROM raw_message WHERE state = 'done'").fetchone()[0] == 2)
    assert conn.execute('SELECT count(*) FROM ticket').fetchone()[0] == 1
    assert conn.execute('SELECT count(*) FROM interaction').fetchone()[0] == 1


def test_starttls_session_at_the_limit_is_kept_and_frees_its_slot(db_url, tmp_path, mailbox):
    cert, key = _make_certificate(tmp_path)
    running = Server(db_url, tmp_path, {'POSTDESK_TLS_CERT': cert, 'POSTDESK_TLS_KEY': key,
                                        'POSTDESK_MAX_SESSIONS': '2'})
    try:
        other = socket.create_connection(('127.0.0.1', running.smtp_port), timeout=5)
        assert other.makefile('rb').readline().startswith(b'220')
        client = _tls_client(running.smtp_port, cert)
        assert client.noop()[0] == 250, 'the session is kept after STARTTLS'
        client.sendmail('anna@customer.example', [MAILBOX], make_message(message_id='<tls-limit@c.example>'))
        client.quit()
        other.close()
        for _ in range(2):      # both slots are free again
            with socket.create_connection(('127.0.0.1', running.smtp_port), timeout=5) as sock:
                assert sock.makefile('rb').readline().startswith(b'220')
    finally:
        assert running.stop() == 0


def test_sigterm_with_an_idle_starttls_session_finishes_the_transaction_in_flight_and_exits_0(
        db_url, tmp_path, mailbox, conn):
    cert, key = _make_certificate(tmp_path)
    running = Server(db_url, tmp_path, {'POSTDESK_TLS_CERT': cert, 'POSTDESK_TLS_KEY': key})
    idle = _tls_client(running.smtp_port, cert)
    with socket.create_connection(('127.0.0.1', running.smtp_port), timeout=10) as sock:
        reader = sock.makefile('rb')
        reader.readline()
        for command in (b'HELO x\r\n', b'MAIL FROM:<anna@customer.example>\r\n',
                        b'RCPT TO:<%s>\r\n' % MAILBOX.encode(), b'DATA\r\n'):
            sock.sendall(command)
            reader.readline()
        sock.sendall(b'From: anna@customer.example\r\nSubject: in flight\r\nMessage-ID: <inflight@c.example>\r\n\r\n')
        running.process.send_signal(signal.SIGTERM)
        time.sleep(1)
        sock.sendall(b'body\r\n.\r\n')
        assert reader.readline().startswith(b'250')
    idle.close()
    assert running.stop() == 0, running.lines[-10:]
    assert tickets_for(conn, 'inflight@c.example')


@pytest.mark.parametrize('argument', [
    '<anna@customer.example>', ' <anna@customer.example> SIZE=4096', '<a.b+tag@x-y.example> BODY=8BITMIME',
    "<o'brien!#$%&*/=?^_`{|}~@example.com>", '<anna@customer.example>SIZE=1', '<>', '', 'anna@customer.example',
    '<"quoted local"@example.com>', '<.lead@example.com>', '<a..b@example.com>', '<a@[127.0.0.1]>',
    '<@relay.example:anna@customer.example>', '<anna@customer.example', '<anna(comment)@customer.example>',
    '<anna@customer.example.>', '<j\u00fcrgen@beispiel.example>', '<a@b.example> (comment) SIZE=1',
    '<a@b.example>\t\tSIZE=1 BODY=7BIT'])
def test_fast_address_reading_agrees_with_aiosmtpd(argument):
    from aiosmtpd.smtp import SMTP
    from ticketing.mail.listener import SmtpSession

    class Handler:
        pass
    assert SmtpSession(Handler())._getaddr(argument) == SMTP(Handler())._getaddr(argument)
