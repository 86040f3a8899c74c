"""`postdesk serve` against what a hostile or broken peer sends: envelopes that are not valid, slow and stalled
transfers, several server processes on one database. Real processes, real sockets, a real PostgreSQL."""
from __future__ import annotations

import socket
import time

import pytest

from mails import MAILBOX, make_message
from test_serve import Server, lmtp_dialogue, mailbox, server, tickets_for, wait_for   # noqa: F401 (fixtures)


def test_an_8bit_unknown_recipient_gets_550_and_one_log_line_without_a_traceback(server, conn):
    replies = lmtp_dialogue(server.smtp_port, [
        b'EHLO mx.test\r\n', b'MAIL FROM:<anna@customer.example>\r\n', b'RCPT TO:<j\xfcrgen@helpdesk.example>\r\n',
        b'RCPT TO:<a@@helpdesk.example>\r\n', b'RCPT TO:<a@[helpdesk.example>\r\n', b'NOOP\r\n'])
    rcpt_8bit, rcpt_malformed, rcpt_unparsable, noop = replies[-4:]
    assert rcpt_8bit.startswith(b'550 5.1.1 ') and b'Error' not in rcpt_8bit and b'Unicode' not in rcpt_8bit
    assert rcpt_malformed.startswith(b'501 5.1.3 ') and rcpt_unparsable.startswith(b'501 5.1.3 ')
    assert noop.startswith(b'250')
    wait_for(lambda: any('outcome=550' in line for line in server.lines))
    time.sleep(0.5)                       # anything logged after the reply would be seen now
    logged = [line for line in server.lines if 'j\\xfcrgen' in line]
    assert len(logged) == 1 and 'reason=address is not valid UTF-8' in logged[0]
    assert not any('Traceback' in line or 'UnicodeEncodeError' in line for line in server.lines)
    assert conn.execute('SELECT count(*) FROM raw_message').fetchone()[0] == 0


# Timeouts, scaled. The real case is a 25 MB message sent at 50 KB/s (500 s, longer than the 300 s idle
# timeout) accepted, and a client sending one byte every 5 seconds cut by the minimum data rate (1 KB/s over
# 60 s). Times are scaled down 25 times and the sizes with them, so that every ratio is the same and the test
# takes about half a minute: a 1 MB message at 50 KB/s (20 s) against an idle timeout of 12 s and a minimum
# rate of 1 KB/s over 2.4 s. The trickling client still sends one byte every 5 seconds.
SCALED_TIMEOUTS = {'POSTDESK_IDLE_TIMEOUT': '12', 'POSTDESK_MIN_DATA_RATE': '1024',
                   'POSTDESK_DATA_RATE_WINDOW': '2.4', 'POSTDESK_MAX_TRANSACTION_TIME': '144'}
SCALED_SIZE = 1024 * 1024
SEND_RATE = 50 * 1024


def open_data(port: int) -> tuple[socket.socket, object]:
    """A session that has said DATA and got 354."""
    sock = socket.create_connection(('127.0.0.1', port), timeout=30)
    reader = sock.makefile('rb')
    assert reader.readline().startswith(b'220')
    for command in (b'HELO mx.test\r\n', b'MAIL FROM:<anna@customer.example>\r\n',
                    b'RCPT TO:<%s>\r\n' % MAILBOX.encode(), b'DATA\r\n'):
        sock.sendall(command)
        reply = reader.readline()
    assert reply.startswith(b'354'), reply
    return sock, reader


def large_message(size: int) -> bytes:
    head = make_message(message_id='<large@customer.example>', subject='large', body='x\n').replace(b'\n', b'\r\n')
    line = b'y' * 74 + b'\r\n'
    return head + line * (size // len(line)) + b'.\r\n'


def send_paced(sock: socket.socket, data: bytes, rate: int, chunk: int = 5120) -> float:
    """Send at `rate` bytes per second in chunks, paced by the clock; the seconds it took."""
    started = time.monotonic()
    for offset in range(0, len(data), chunk):
        due = started + offset / rate
        time.sleep(max(0.0, due - time.monotonic()))
        sock.sendall(data[offset:offset + chunk])
    return time.monotonic() - started


def test_a_slow_but_steady_transfer_is_accepted_while_a_trickling_client_is_cut(db_url, tmp_path, mailbox, conn):
    running = Server(db_url, tmp_path, SCALED_TIMEOUTS)
    try:
        trickle, reader = open_data(running.smtp_port)
        with trickle:
            answer = b''
            for _ in range(12):                          # at most a minute: one byte every 5 seconds
                try:
                    trickle.sendall(b'x')
                except OSError:
                    break
                try:
                    trickle.settimeout(5)
                    answer = reader.readline()
                except socket.timeout:
                    continue
                break
        assert answer.startswith(b'421 4.4.2') and b'data rate' in answer, answer
        sock, reader = open_data(running.smtp_port)
        with sock:
            seconds = send_paced(sock, large_message(SCALED_SIZE), SEND_RATE)
            sock.settimeout(30)
            reply = reader.readline()
        assert seconds > 12, 'the transfer outlasts the idle timeout, as 25 MB at 50 KB/s outlast 300 s'
        assert reply.startswith(b'250'), reply
        assert wait_for(lambda: tickets_for(conn, 'large@customer.example'), timeout=60)
    finally:
        running.stop()
    assert sum('outcome=421 reason=data rate below 1024 bytes/s' in line for line in running.lines) == 1
    assert not any('Traceback' in line for line in running.lines)


def test_a_transaction_longer_than_the_maximum_is_cut(db_url, tmp_path, mailbox):
    running = Server(db_url, tmp_path, {'POSTDESK_MAX_TRANSACTION_TIME': '2'})
    try:
        with socket.create_connection(('127.0.0.1', running.smtp_port), timeout=10) as sock:
            reader = sock.makefile('rb')
            reader.readline()
            for command in (b'HELO mx.test\r\n', b'MAIL FROM:<anna@customer.example>\r\n'):
                sock.sendall(command)
                reader.readline()
            replies = []
            for _ in range(20):                          # NOOPs keep the idle timer going; not the transaction
                try:
                    sock.sendall(b'NOOP\r\n')
                    replies.append(reader.readline())
                except OSError:
                    break
                if not replies[-1].startswith(b'250'):
                    break
                time.sleep(0.5)
        assert replies[-1].startswith(b'421 4.4.2') and b'transaction took longer' in replies[-1], replies
    finally:
        running.stop()
