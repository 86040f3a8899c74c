"""`postdesk ticket list`: streamed in id order (a server-side cursor), with --limit and --since."""
from __future__ import annotations

from mails import MAILBOX, make_message
from test_replay_cli import add_mailbox, lines, write


def test_ticket_list_takes_limit_and_since(run_postdesk, tmp_path, conn):
    add_mailbox(run_postdesk, MAILBOX, '--default')
    for n in range(5):
        write(tmp_path / 'in' / ('%d.eml' % n), make_message(message_id='<l-%d@c.example>' % n, subject='list %d' % n))
    assert run_postdesk('replay', str(tmp_path / 'in')).returncode == 0
    conn.execute("UPDATE ticket SET last_changed = '2026-01-01T00:00:00Z' WHERE ticket_id <= 3")
    everything = lines(run_postdesk('ticket', 'list', '--json').stdout)
    assert [t['TicketId'] for t in everything] == [1, 2, 3, 4, 5]
    assert [t['TicketId'] for t in lines(run_postdesk('ticket', 'list', '--json', '--limit', '2').stdout)] == [1, 2]
    recent = run_postdesk('ticket', 'list', '--json', '--since', '2026-06-01')
    assert [t['TicketId'] for t in lines(recent.stdout)] == [4, 5]
    both = run_postdesk('ticket', 'list', '--json', '--since', '2025-12-31T23:00:00+00:00', '--limit', '1')
    assert [t['TicketId'] for t in lines(both.stdout)] == [1]
    assert run_postdesk('ticket', 'list', '--since', 'yesterday').returncode == 2
    assert run_postdesk('ticket', 'list', '--limit', '0').returncode == 2
    text = run_postdesk('ticket', 'list', '--limit', '1').stdout
    assert text.splitlines() == ['     1  Active      1  list 0']
