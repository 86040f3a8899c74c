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
