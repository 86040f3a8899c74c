"""Log output for log shippers: `--log-format json` (or `[logging] format = "json"`, POSTDESK_LOG_FORMAT) gives
one JSON object per line with the fields of the key=value text lines."""
from __future__ import annotations

import json
import smtplib

from mails import MAILBOX, make_message
from test_replay_cli import add_mailbox, write
from test_serve import Server, mailbox, wait_for   # noqa: F401 (fixture)


def test_serve_logs_one_json_object_per_line_with_the_fields_of_the_text_line(db_url, tmp_path, mailbox):
    running = Server(db_url, tmp_path, {'POSTDESK_LOG_FORMAT': 'json'})
    try:
        with smtplib.SMTP('127.0.0.1', running.smtp_port, timeout=10) as client:
            client.sendmail('anna@customer.example', [MAILBOX], make_message(message_id='<json@c.example>'))
        wait_for(lambda: any('outcome=new' in line for line in running.lines))
    finally:
        assert running.stop() == 0
    entries = [json.loads(line) for line in running.lines]        # every line is a JSON object
    [stored] = [e for e in entries if e.get('outcome') == 'new']
    assert {'time', 'level', 'logger', 'message', 'peer', 'from', 'to', 'message-id', 'ticket', 'ms'} <= set(stored)
    assert (stored['level'], stored['logger'], stored['message-id']) == ('INFO', 'postdesk.intake',
                                                                         '<json@c.example>')
    assert stored['from'] == '<anna@customer.example>' and isinstance(stored['ticket'], int)
    assert stored['message'].startswith('peer=127.0.0.1:')
    assert any(e['message'].startswith('SMTP listening on') for e in entries)


def test_replay_logs_json_by_flag_or_by_configuration_file(run_postdesk, tmp_path):
    add_mailbox(run_postdesk, MAILBOX, '--default')
    assert run_postdesk('mailbox', 'ack', MAILBOX, '--default').returncode == 0
    for n in range(3):
        write(tmp_path / 'in' / ('%d.eml' % n), make_message(message_id='<log-%d@c.example>' % n, subject='s%d' % n))
    (tmp_path / 'limit.toml').write_text('[outbound]\nack_per_hour = 1\n')
    (tmp_path / 'json.toml').write_text('[outbound]\nack_per_hour = 1\n\n[logging]\nformat = "json"\n')
    by_flag = run_postdesk('--config', str(tmp_path / 'limit.toml'), '--log-format', 'json', '-v', 'replay',
                           str(tmp_path / 'in'))
    write(tmp_path / 'more' / 'x.eml', make_message(message_id='<log-x@c.example>', subject='more'))
    by_file = run_postdesk('--config', str(tmp_path / 'json.toml'), '-v', 'replay', str(tmp_path / 'more'))
    for result, skipped in ((by_flag, 2), (by_file, 1)):
        assert result.returncode == 0, result.stderr
        logged = [json.loads(line) for line in result.stderr.splitlines() if line.startswith('{')]
        limited = [e for e in logged if 'no acknowledgement to' in e['message']]
        assert len(limited) == skipped and limited[0]['level'] == 'INFO'
        assert limited[0]['logger'] == 'postdesk.intake'
    assert run_postdesk('--log-format', 'xml', 'initdb').returncode == 2
