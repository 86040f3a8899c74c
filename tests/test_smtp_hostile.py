"""What a sending server can get wrong, on a real `postdesk serve` and a real PostgreSQL: bytes that are not a
message are kept in the quarantine with the reason (as replay keeps them), a sender path that is not a mailbox
is refused at MAIL FROM, control characters never reach a reply or a log line raw, and the null path of a
bounce is stored as the empty sender."""
from __future__ import annotations

import smtplib

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
