"""What a sending server can get wrong, on a real `postdesk serve` and a real PostgreSQL: bytes that are not a
message are kept in the quarantine with the reason (as replay keeps them), a sender path that is not a mailbox
is refused at MAIL FROM, control characters never reach a reply or a log line raw, the null path of a
bounce is stored as the empty sender, and a client that leaves before its reply costs the others nothing."""
from __future__ import annotations

import concurrent.futures
import smtplib
import socket
import time

import psycopg

from mails import MAILBOX, make_message
from test_serve import Server, mailbox, wait_for  # noqa: F401


def count(conn, table: str) -> int:
    return conn.execute('SELECT count(*) FROM %s' % table).fetchone()[0]


def test_bytes_that_are_not_a_message_are_quarantined_with_the_reason(db_url, tmp_path, mailbox, conn):
    running = Server(db_url, tmp_path)
    try:
        with smtplib.SMTP('127.0.0.1', running.smtp_port, timeout=30) as client:
            client.ehlo('sender.example')
            for data in (b'just text\r\nline two\r\n', b''):
                client.mail('customer@example.com')
                client.rcpt(MAILBOX)
                assert client.data(data)[0] == 250
        wait_for(lambda: count(conn, 'quarantine') == 2)
    finally:
        running.stop()
    assert count(conn, 'ticket') == 0
    reasons = sorted(r[0] for r in conn.execute('SELECT reason FROM quarantine'))
    assert all(reason.startswith('not a message') for reason in reasons), reasons


def test_a_sender_that_is_not_a_mailbox_is_refused_at_mail_from(db_url, tmp_path, mailbox, conn):
    running = Server(db_url, tmp_path)
    try:
        with smtplib.SMTP('127.0.0.1', running.smtp_port, timeout=30) as client:
            client.ehlo('sender.example')
            refused = [client.docmd('MAIL FROM:%s' % path) for path in ('<bad', '<nodomain>')]
            client.send(b'MAIL FROM:<b\xffb@customer.example>\r\n')
            refused.append(client.getreply())
            null = client.docmd('MAIL FROM:<>')
            client.rcpt(MAILBOX)
            assert client.data(make_message(message_id='<bounce@mailer.example>'))[0] == 250
        wait_for(lambda: count(conn, 'interaction') == 1)
    finally:
        running.stop()
    assert [code for code, _ in refused] == [550, 550, 550] and refused[0][1].startswith(b'5.1.7')
    assert null[0] == 250
    assert conn.execute('SELECT envelope_from FROM raw_message').fetchone()[0] == ''


def test_control_characters_are_escaped_in_replies_and_the_log(db_url, tmp_path, mailbox):
    running = Server(db_url, tmp_path)
    try:
        with smtplib.SMTP('127.0.0.1', running.smtp_port, timeout=30) as client:
            client.ehlo('sender.example')
            client.mail('customer@example.com')
            code, text = client.docmd('RCPT TO:<support@helpdesk.example\x00x>')
    finally:
        running.stop()
    assert code == 550 and b'\x00' not in text and b'\\x00' in text
    logged = [line for line in running.lines if 'outcome=550' in line]
    assert logged and all('\x00' not in line for line in logged)


def send_without_waiting(port: int, message: bytes) -> socket.socket:
    """A client that sends a whole message and does not wait for the reply (it closes the socket later)."""
    client = socket.create_connection(('127.0.0.1', port), timeout=10)
    reader = client.makefile('rb')
    for line in (None, b'EHLO leaving.example', b'MAIL FROM:<gone@customer.example>',
                 b'RCPT TO:<%s>' % MAILBOX.encode(), b'DATA'):
        if line is not None:
            client.sendall(line + b'\r\n')
        while reader.readline()[3:4] == b'-':
            pass
    client.sendall(message + b'\r\n.\r\n')
    return client


def test_clients_that_leave_before_their_reply_cost_the_other_sessions_nothing(db_url, tmp_path, mailbox, conn):
    running = Server(db_url, tmp_path)
    locker = psycopg.connect(db_url)
    try:
        locker.execute('LOCK TABLE raw_message IN SHARE MODE')          # every write waits meanwhile
        leaving = [send_without_waiting(running.smtp_port, make_message(message_id='<gone-%d@customer.example>' % n))
                   for n in range(2)]
        time.sleep(0.5)                                                # their messages are being written

        def deliver(n: int) -> dict:
            with smtplib.SMTP('127.0.0.1', running.smtp_port, timeout=20) as client:
                return client.sendmail('anna@customer.example', [MAILBOX],
                                       make_message(message_id='<stays-%d@customer.example>' % n))
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            delivered = [pool.submit(deliver, n) for n in range(4)]
            time.sleep(0.5)
            for client in leaving:                                     # they leave while their writes wait
                client.close()
            time.sleep(1)
            locker.rollback()
            assert [d.result(timeout=20) for d in delivered] == [{}] * 4   # every recipient accepted
    finally:
        locker.close()
        running.stop()
    stored = {mid for (mid,) in conn.execute('SELECT message_id FROM interaction').fetchall()}
    assert {'stays-%d@customer.example' % n for n in range(4)} <= stored
