"""Batch imports whose result does not depend on the order of the input: mbox envelope lines read as RFC 4155
and mutt read them, Maildirs in delivery order, and originals that arrive after their replies."""
from __future__ import annotations

import json

from mails import MAILBOX, make_message
from test_replay_cli import add_mailbox, lines, write

BODY_WITH_FROM_LINES = ('Hello,\n\nFrom the office in Hamburg we sent it on Monday.\n\n'
                        'From 9 to 5 nobody answers the phone.\n\nFrom anna@customer.example yesterday\n'
                        'thanks\n')


def test_unescaped_from_lines_in_an_mbox_body_stay_in_their_message(run_postdesk, tmp_path, conn):
    add_mailbox(run_postdesk, MAILBOX, '--default')
    first = make_message(message_id='<office-1@c.example>', body=BODY_WITH_FROM_LINES)
    second = make_message(message_id='<office-2@c.example>', subject='second')
    mbox = b''.join(b'From anna@customer.example Mon Nov 16 09:00:00 2026\n' + m.replace(b'\r\n', b'\n') + b'\n'
                    for m in (first, second))
    write(tmp_path / 'export.mbox', mbox)
    result = run_postdesk('replay', '--json', str(tmp_path / 'export.mbox'))
    assert result.returncode == 0, result.stderr
    assert [o['Outcome'] for o in lines(result.stdout)] == ['new', 'new']
    body = conn.execute("SELECT body_plain FROM interaction WHERE message_id = 'office-1@c.example'").fetchone()[0]
    for line in BODY_WITH_FROM_LINES.splitlines():
        assert line in body
    assert conn.execute('SELECT count(*) FROM quarantine').fetchone()[0] == 0


def test_envelope_lines_are_told_from_body_lines():
    from ticketing.intake.sources import _ENVELOPE_LINE
    for line in (b'From anna@customer.example Mon Nov 16 09:00:00 2026\n',
                 b'From MAILER-DAEMON Thu Jan  1 00:00 1970\n',
                 b'From  Tue Nov 17 12:00:00 2026\r\n', b'From a@b Tue Nov 17 12:00:00 CET 2026\n',
                 b'From a@b Tue Nov 17 12:00:00 2026 +0100\n'):
        assert _ENVELOPE_LINE.match(line), line
    for line in (b'From the office in Hamburg we sent it.\n', b'From 9 to 5\n', b'From anna@customer.example\n',
                 b'From anna@customer.example yesterday at 9\n'):
        assert not _ENVELOPE_LINE.match(line), line


def test_maildir_with_the_original_in_cur_and_the_reply_in_new_gives_one_ticket(run_postdesk, tmp_path):
    add_mailbox(run_postdesk, MAILBOX, '--default')
    maildir = tmp_path / 'Maildir'
    write(maildir / 'cur' / '1763366400.M2P101.mx:2,S', make_message(message_id='<orig@c.example>'))
    write(maildir / 'new' / '1763452800.M1P100.mx', make_message(
        message_id='<reply@c.example>', in_reply_to='<orig@c.example>', subject='Re: Order 1001 has not arrived'))
    (maildir / 'tmp').mkdir()
    result = run_postdesk('replay', '--json', str(maildir))
    assert result.returncode == 0, result.stderr
    outcomes = lines(result.stdout)
    assert [o['Outcome'] for o in outcomes] == ['new', 'followup']
    assert outcomes[0]['TicketId'] == outcomes[1]['TicketId']


def groupings(conn, mailbox: str) -> list[frozenset[str]]:
    """The messages of each ticket of a mailbox that holds any (a merged ticket is closed and holds none)."""
    rows = conn.execute('SELECT array_agg(i.message_id) FROM interaction i JOIN mailbox m USING (mailbox_id) '
                        'WHERE m.address = %s GROUP BY i.ticket_id', (mailbox,)).fetchall()
    return sorted((frozenset(r[0]) for r in rows), key=sorted)


def test_the_same_1000_messages_in_order_and_reversed_give_the_same_tickets(run_postdesk, tmp_path, conn):
    from corpus import standard_corpus
    files = [str(path) for path in standard_corpus(1000)]
    add_mailbox(run_postdesk, 'in-order@helpdesk.example')
    add_mailbox(run_postdesk, 'reversed@helpdesk.example')
    forward = run_postdesk('replay', '--mailbox', 'in-order@helpdesk.example', *files, timeout=600)
    backward = run_postdesk('replay', '--mailbox', 'reversed@helpdesk.example', *reversed(files), timeout=600)
    assert forward.returncode == 0 and backward.returncode == 0, forward.stderr + backward.stderr
    in_order, reverse = groupings(conn, 'in-order@helpdesk.example'), groupings(conn, 'reversed@helpdesk.example')
    assert sum(map(len, in_order)) == sum(map(len, reverse)) == 1000
    assert len(reverse) == len(in_order)
    assert reverse == in_order
    merged = conn.execute("SELECT count(*) FROM ticket t JOIN mailbox m USING (mailbox_id) WHERE m.address = "
                          "'reversed@helpdesk.example' AND t.num_messages = 0").fetchone()[0]
    audits = conn.execute("SELECT count(*) FROM status_audit WHERE action LIKE 'Merged into ticket: %'").fetchone()[0]
    closed = conn.execute("SELECT count(*) FROM ticket WHERE num_messages = 0 AND status = 'Closed' "
                          'AND connect_id IS NOT NULL').fetchone()[0]
    assert merged == audits == closed
