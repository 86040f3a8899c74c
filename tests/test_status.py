"""`postdesk status [--json]` on a running `postdesk serve`: spool backlog, quarantine, outbox, listeners; exit 0
healthy, 1 when something needs a look, 75 when the database is unreachable. The figures are checked against
the database itself."""
from __future__ import annotations

import json
import smtplib

from mails import MAILBOX, make_message
from test_delivery import Relay, Sink, relays   # noqa: F401 (fixture)
from test_replay_cli import write
from test_serve import Server, _set_database_available, mailbox   # noqa: F401 (fixture)


def status(run_postdesk, running: Server, *extra: str):
    return run_postdesk('status', '--json', '--smtp', '127.0.0.1:%d' % running.smtp_port,
                        '--lmtp', '127.0.0.1:%d' % running.lmtp_port, *extra)


def failed_reply(run_postdesk, tmp_path, relays) -> None:
    """A reply the relay refuses for good (550): the outbox row and the interaction are Failed."""
    write(tmp_path / 'question.eml', make_message(message_id='<status-q@c.example>'))
    assert run_postdesk('replay', str(tmp_path / 'question.eml')).returncode == 0
    assert run_postdesk('reply', '1', '--text', 'We are on it.').returncode == 0
    relay = relays(Sink(refuse={'anna@customer.example': '550 5.1.1 No such user'}))
    deliver = run_postdesk('deliver', '--once', extra_env={'POSTDESK_SMTP_RELAY': relay.address})
    assert 'failed 1' in deliver.stdout, deliver.stdout + deliver.stderr


def test_status_json_reports_backlog_quarantine_failed_reply_and_listeners_as_the_database_has_them(
        db_url, tmp_path, mailbox, conn, run_postdesk, relays):
    failed_reply(run_postdesk, tmp_path, relays)
    write(tmp_path / 'junk.eml', b'\x00\x01 not a message')
    assert run_postdesk('replay', str(tmp_path / 'junk.eml')).returncode == 1          # one held
    running = Server(db_url, tmp_path, args=('--workers', '0'))     # no intake workers: the spool backlogs
    try:
        with smtplib.SMTP('127.0.0.1', running.smtp_port, timeout=10) as client:
            for n in range(3):
                client.sendmail('anna@customer.example', [MAILBOX], make_message(message_id='<s%d@c.example>' % n))
        result = status(run_postdesk, running)
    finally:
        assert running.stop() == 0
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    pending, waited = conn.execute("SELECT count(*), extract(epoch FROM now() - min(received_at)) FROM raw_message "
                                   "WHERE state = 'pending'").fetchone()
    assert report['spool']['pending'] == pending == 3
    assert 0 <= report['spool']['oldest_pending_seconds'] <= float(waited)
    assert report['quarantine']['held'] == conn.execute(
        "SELECT count(*) FROM quarantine WHERE state = 'held'").fetchone()[0] == 1
    assert (report['outbox']['queued'], report['outbox']['failed'], report['outbox']['sent_last_hour']) == \
        conn.execute("SELECT count(*) FILTER (WHERE state = 'queued'), count(*) FILTER (WHERE state = 'failed'), "
                     "count(*) FILTER (WHERE state = 'sent') FROM outbox").fetchone() == (0, 1, 0)
    assert report['outbox']['oldest_queued_seconds'] is None
    assert report['database'] == {'reachable': True, 'schema_current': True, 'schema_version': conn.execute(
        "SELECT value FROM postdesk_meta WHERE key = 'schema_sha256'").fetchone()[0]}
    assert [(l['protocol'], l['answers']) for l in report['listeners']] == [('smtp', True), ('lmtp', True)]
    assert report['healthy'] is False and report['problems'] == ['1 replies failed (postdesk outbox list)']


def test_status_is_0_when_healthy_1_when_a_listener_is_down_and_75_without_database(
        db_url, server_url, tmp_path, mailbox, run_postdesk):
    running = Server(db_url, tmp_path)
    try:
        healthy = status(run_postdesk, running)
        assert healthy.returncode == 0, healthy.stdout
        assert json.loads(healthy.stdout)['healthy'] is True
        text = run_postdesk('status', '--smtp', '127.0.0.1:%d' % running.smtp_port, '--lmtp', 'off')
        assert text.returncode == 0 and text.stdout.startswith('healthy') and 'spool:' in text.stdout
        _set_database_available(server_url, db_url, False)
        try:
            unreachable = status(run_postdesk, running)
        finally:
            _set_database_available(server_url, db_url, True)
        assert unreachable.returncode == 75, unreachable.stdout
        assert json.loads(unreachable.stdout)['database']['reachable'] is False
    finally:
        assert running.stop() == 0
    down = run_postdesk('status', '--json', '--smtp', '127.0.0.1:%d' % running.smtp_port, '--lmtp', 'off')
    assert down.returncode == 1
    assert json.loads(down.stdout)['listeners'][0]['answers'] is False
