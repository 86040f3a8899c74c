"""`postdesk replay`, `ticket`, `mailbox`, `quarantine` and `initdb` as an operator runs them."""
from __future__ import annotations

import json
import subprocess

import psycopg

from conftest import postdesk_executable
from mails import MAILBOX, make_message

TICKETINFO_KEYS = ['TicketId', 'Title', 'OwnerName', 'CategoryName', 'PriorityName', 'TicketUrl', 'PersonName',
                   'ContactName', 'InteractionId', 'Outcome', 'ThreadRule', 'Source', 'Reason']


def lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def write(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def add_mailbox(run_postdesk, address=MAILBOX, *extra):
    result = run_postdesk('mailbox', 'add', address, '--name', 'Support', *extra)
    assert result.returncode == 0, result.stderr


def test_replay_json_prints_ticketinfo_per_message_and_exit_0(run_postdesk, tmp_path):
    add_mailbox(run_postdesk, MAILBOX, '--default', '--category', 'Orders', '--priority', 'High')
    write(tmp_path / 'in' / 'a.eml', make_message())
    write(tmp_path / 'in' / 'b.eml', make_message(message_id='<r@c.example>', in_reply_to='<q1@customer.example>'))
    result = run_postdesk('replay', '--json', str(tmp_path / 'in'))
    assert result.returncode == 0, result.stderr
    first, second = lines(result.stdout)
    assert list(first) == TICKETINFO_KEYS
    assert first['Outcome'] == 'new' and first['ThreadRule'] == 'new'
    assert first['Title'] == 'Order 1001 has not arrived'
    assert (first['CategoryName'], first['PriorityName'], first['PersonName']) == ('Orders', 'High', 'Anna Schmidt')
    assert first['TicketUrl'].endswith('/%d' % first['TicketId'])
    assert first['Source'].endswith('a.eml') and first['Reason'] is None
    assert (second['Outcome'], second['ThreadRule'], second['TicketId']) == ('followup', 'in-reply-to',
                                                                              first['TicketId'])
    assert 'new 1, followup 1' in result.stderr


def test_replaying_again_reports_duplicates_and_changes_nothing(run_postdesk, tmp_path, conn):
    add_mailbox(run_postdesk, MAILBOX, '--default')
    write(tmp_path / 'a.eml', make_message())
    run_postdesk('replay', str(tmp_path / 'a.eml'))
    before = conn.execute('SELECT count(*), max(last_changed) FROM ticket').fetchone()
    result = run_postdesk('replay', '--json', str(tmp_path / 'a.eml'))
    assert result.returncode == 0
    [again] = lines(result.stdout)
    assert again['Outcome'] == 'duplicate'
    assert conn.execute('SELECT count(*), max(last_changed) FROM ticket').fetchone() == before


def test_poison_file_between_good_ones_is_quarantined_and_exit_is_1(run_postdesk, tmp_path, conn):
    add_mailbox(run_postdesk, MAILBOX, '--default')
    write(tmp_path / 'in' / '1.eml', make_message(message_id='<one@c.example>'))
    write(tmp_path / 'in' / '2.eml', b'\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1' + b'\x00' * 600)
    write(tmp_path / 'in' / '3.eml', make_message(message_id='<three@c.example>', subject='another'))
    result = run_postdesk('replay', '--json', str(tmp_path / 'in'))
    assert result.returncode == 1
    outcomes = lines(result.stdout)
    assert [o['Outcome'] for o in outcomes] == ['new', 'quarantined', 'new']
    assert 'Outlook' in outcomes[1]['Reason']
    assert 'quarantined' in result.stderr and '2.eml' in result.stderr
    kept = conn.execute('SELECT reason, data FROM quarantine').fetchall()
    assert len(kept) == 1 and bytes(kept[0][1]).startswith(b'\xd0\xcf\x11\xe0')


def test_usage_errors_exit_2(run_postdesk, tmp_path):
    add_mailbox(run_postdesk, MAILBOX)
    write(tmp_path / 'a.eml', make_message())
    assert run_postdesk('replay', str(tmp_path / 'missing.eml')).returncode == 2
    result = run_postdesk('replay', '--mailbox', 'nobody@helpdesk.example', str(tmp_path / 'a.eml'))
    assert result.returncode == 2 and 'no mailbox nobody@helpdesk.example' in result.stderr
    assert run_postdesk('replay').returncode == 2
    assert run_postdesk('ticket', 'show', '999').returncode == 2


def test_routing_uses_delivered_to_then_to_then_the_default(run_postdesk, tmp_path):
    add_mailbox(run_postdesk, 'general@helpdesk.example', '--default')
    add_mailbox(run_postdesk, 'billing@helpdesk.example')
    add_mailbox(run_postdesk, 'sales@helpdesk.example')
    write(tmp_path / 'in' / '1.eml', make_message(message_id='<1@c.example>', to='sales@helpdesk.example',
                                                  headers={'Delivered-To': 'billing@helpdesk.example'}))
    write(tmp_path / 'in' / '2.eml', make_message(message_id='<2@c.example>',
                                                  to='someone@else.example, Sales <SALES+urgent@helpdesk.example>'))
    write(tmp_path / 'in' / '3.eml', make_message(message_id='<3@c.example>', to='unknown@helpdesk.example'))
    run_postdesk('replay', str(tmp_path / 'in'))
    result = run_postdesk('ticket', 'list', '--json')
    ids = [t['TicketId'] for t in lines(result.stdout)]
    mailboxes = [json.loads(run_postdesk('ticket', 'show', str(i), '--json').stdout)['Mailbox'] for i in ids]
    assert mailboxes == ['billing@helpdesk.example', 'sales@helpdesk.example', 'general@helpdesk.example']


def test_forced_mailbox_overrides_routing(run_postdesk, tmp_path):
    add_mailbox(run_postdesk, 'general@helpdesk.example', '--default')
    add_mailbox(run_postdesk, 'billing@helpdesk.example')
    write(tmp_path / 'a.eml', make_message(to='general@helpdesk.example'))
    run_postdesk('replay', '--mailbox', 'BILLING@helpdesk.example', str(tmp_path / 'a.eml'))
    show = json.loads(run_postdesk('ticket', 'show', '1', '--json').stdout)
    assert show['Mailbox'] == 'billing@helpdesk.example'


def test_without_any_mailbox_messages_are_quarantined_then_retried(run_postdesk, tmp_path):
    write(tmp_path / 'a.eml', make_message())
    result = run_postdesk('replay', '--json', str(tmp_path / 'a.eml'))
    assert result.returncode == 1
    [held] = lines(result.stdout)
    assert held['Outcome'] == 'quarantined' and 'no mailbox' in held['Reason']
    listing = lines(run_postdesk('quarantine', 'list', '--json').stdout)
    assert [h['Reason'] for h in listing] == [held['Reason']]
    shown = run_postdesk('quarantine', 'show', str(listing[0]['QuarantineId']))
    assert 'no mailbox' in shown.stdout and 'Subject: Order 1001 has not arrived' in shown.stdout
    add_mailbox(run_postdesk, MAILBOX)
    retried = run_postdesk('quarantine', 'retry', '--json')
    assert retried.returncode == 0, retried.stderr
    [outcome] = lines(retried.stdout)
    assert outcome['Outcome'] == 'new' and outcome['TicketId'] == 1
    assert lines(run_postdesk('quarantine', 'list', '--json').stdout) == []
    released = lines(run_postdesk('quarantine', 'list', '--all', '--json').stdout)
    assert released[0]['State'] == 'released'


def test_mbox_and_maildir_are_read_in_order_with_positions(run_postdesk, tmp_path):
    add_mailbox(run_postdesk, MAILBOX, '--default')
    first = make_message(message_id='<m1@c.example>', body='>From the help page I learnt a lot.\n')
    second = make_message(message_id='<m2@c.example>', in_reply_to='<m1@c.example>', subject='Re: x')
    mbox = b''.join(b'From anna@customer.example Mon Nov 16 09:00:00 2026\n' + m.replace(b'\r\n', b'\n') + b'\n'
                    for m in (first, second))
    write(tmp_path / 'box.mbox', mbox)
    write(tmp_path / 'Maildir' / 'new' / '1.host', make_message(message_id='<d1@c.example>', subject='new one'))
    write(tmp_path / 'Maildir' / 'cur' / '2.host:2,S', make_message(message_id='<d2@c.example>', subject='seen'))
    (tmp_path / 'Maildir' / 'tmp').mkdir()
    write(tmp_path / 'Maildir' / 'tmp' / 'partial', b'From: half a message')
    result = run_postdesk('replay', '--json', str(tmp_path / 'box.mbox'), str(tmp_path / 'Maildir'))
    assert result.returncode == 0, result.stderr
    outcomes = lines(result.stdout)
    assert [o['Source'].rsplit('/', 1)[-1] for o in outcomes] == ['box.mbox#1', 'box.mbox#2', '1.host', '2.host:2,S']
    assert [o['Outcome'] for o in outcomes] == ['new', 'followup', 'new', 'new']
    entity = json.loads(run_postdesk('ticket', 'show', str(outcomes[0]['TicketId']), '--json').stdout)
    assert entity['NumMessages'] == 2


def test_mbox_from_lines_are_unescaped(conn, config, tmp_path):
    from ticketing.intake.sources import iter_mbox
    write(tmp_path / 'box', b'From x Mon Nov 16 09:00:00 2026\nSubject: a\n\n>From here\n>>From there\n')
    [message] = list(iter_mbox(str(tmp_path / 'box')))
    assert message.raw == b'Subject: a\n\nFrom here\n>From there\n'


def test_ticket_show_json_is_a_ticket_entity(run_postdesk, tmp_path):
    add_mailbox(run_postdesk, MAILBOX, '--default')
    write(tmp_path / 'a.eml', make_message(attachments=[('receipt.pdf', 'application/pdf', b'%PDF-1.4 test')]))
    run_postdesk('replay', str(tmp_path / 'a.eml'))
    entity = json.loads(run_postdesk('ticket', 'show', '1', '--json').stdout)
    for key in ('TicketId', 'Title', 'CreatedAt', 'LastChanged', 'BaseStatus', 'Person', 'FromAddress', 'ConnectId',
                'NumMessages', 'NumReplies', 'HasAttachment', 'Tags', 'Messages'):
        assert key in entity
    assert set(entity['Person']) >= {'PersonId', 'FullName', 'Email'}
    assert entity['HasAttachment'] is True and entity['NumReplies'] == 0 and entity['Tags'] == []
    [message] = entity['Messages']
    assert set(message) >= {'TicketMessageId', 'CreatedAt', 'Author', 'Subject', 'MessageId', 'Type', 'ThreadRule',
                            'NumAttachments'}
    assert message['Author'] == 'Anna Schmidt <anna@customer.example>'
    assert message['NumAttachments'] == 1
    [listed] = lines(run_postdesk('ticket', 'list', '--json').stdout)
    assert {k: listed[k] for k in ('TicketId', 'Title', 'BaseStatus', 'NumMessages')} == {
        'TicketId': 1, 'Title': 'Order 1001 has not arrived', 'BaseStatus': 'Active', 'NumMessages': 1}


def test_two_replays_of_the_same_directory_at_once_store_each_message_once(run_postdesk, tmp_path, db_url, conn):
    add_mailbox(run_postdesk, MAILBOX, '--default')
    for i in range(300):
        write(tmp_path / 'in' / ('%03d.eml' % i), make_message(message_id='<m%d@c.example>' % i,
                                                              subject='question %d' % i,
                                                              sender='Customer %d <c%d@customer.example>' % (i % 7, i % 7)))
    env = {'DATABASE_URL': db_url, 'PATH': '/usr/bin:/bin'}
    files = sorted(str(f) for f in (tmp_path / 'in').iterdir())
    # One replay walks the folder forwards, the other backwards, so that they meet in the middle.
    procs = [subprocess.Popen([postdesk_executable(), 'replay', '--json', *order], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for order in (files, files[::-1])]
    results = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [r[1] for r in results]
    by_source = [{o['Source']: o['Outcome'] for o in lines(out)} for out, _ in results]
    assert all(len(o) == 300 for o in by_source)
    for name in files:
        assert sorted(o[name] for o in by_source) == ['duplicate', 'new'], name
    assert conn.execute('SELECT count(*), count(DISTINCT message_id) FROM interaction').fetchone() == (300, 300)
    assert conn.execute('SELECT count(*) FROM ticket').fetchone()[0] == 300
    assert conn.execute('SELECT count(*) FROM person').fetchone()[0] == 7


def test_message_failing_half_way_leaves_nothing_half_written(run_postdesk, tmp_path, conn):
    add_mailbox(run_postdesk, MAILBOX, '--default')
    # A real fault inside the database: a trigger rejects one message's interaction row after its raw bytes,
    # person and ticket rows were written in the same transaction.
    conn.execute("""
        CREATE FUNCTION reject_poison() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.subject = 'POISON' THEN RAISE EXCEPTION 'poisoned row for test'; END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER reject_poison BEFORE INSERT ON interaction FOR EACH ROW EXECUTE FUNCTION reject_poison();
    """)
    write(tmp_path / 'in' / '1.eml', make_message(message_id='<ok1@c.example>', subject='fine'))
    write(tmp_path / 'in' / '2.eml', make_message(message_id='<bad@c.example>', subject='POISON',
                                                  sender='Poison <poison@c.example>'))
    write(tmp_path / 'in' / '3.eml', make_message(message_id='<ok2@c.example>', subject='also fine'))
    result = run_postdesk('replay', '--json', str(tmp_path / 'in'))
    assert result.returncode == 1
    assert [o['Outcome'] for o in lines(result.stdout)] == ['new', 'quarantined', 'new']
    assert 'poisoned row for test' in lines(result.stdout)[1]['Reason']
    assert conn.execute("SELECT count(*) FROM ticket WHERE title = 'POISON'").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM raw_message WHERE data LIKE '%%POISON%%'").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM person WHERE email = 'poison@c.example'").fetchone()[0] == 0
    assert conn.execute('SELECT count(*) FROM ticket').fetchone()[0] == 2
    assert conn.execute('SELECT count(*) FROM quarantine').fetchone()[0] == 1


def test_initdb_twice_changes_nothing(run_postdesk, db_url):
    def schema_dump():
        with psycopg.connect(db_url) as c:
            return c.execute("SELECT table_name, column_name, data_type FROM information_schema.columns "
                             "WHERE table_schema = 'public' ORDER BY 1, 2").fetchall()
    before = schema_dump()
    assert run_postdesk('initdb').returncode == 0
    assert run_postdesk('initdb').returncode == 0
    assert schema_dump() == before


def test_large_columns_use_lz4_where_the_server_has_it(conn):
    has_lz4 = conn.execute("SELECT 'lz4' = ANY(enumvals) FROM pg_settings "
                           "WHERE name = 'default_toast_compression'").fetchone()[0]
    compression = dict(conn.execute(
        "SELECT attrelid::regclass::text || '.' || attname, attcompression FROM pg_attribute "
        "WHERE attrelid IN ('raw_message'::regclass, 'blob'::regclass) AND attname = 'data'").fetchall())
    expected = 'l' if has_lz4 else ''
    assert compression == {'raw_message.data': expected, 'blob.data': expected}


def test_a_file_saved_with_a_byte_order_mark_is_a_message(run_postdesk, tmp_path, conn):
    add_mailbox(run_postdesk, MAILBOX, '--default')
    path = tmp_path / 'saved-on-windows.eml'
    path.write_bytes(b'\xef\xbb\xbf' + make_message(subject='Saved with a BOM'))
    result = run_postdesk('replay', str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert conn.execute('SELECT title FROM ticket').fetchone()[0] == 'Saved with a BOM'


def test_a_symbolic_link_loop_is_read_once(run_postdesk, tmp_path, conn):
    add_mailbox(run_postdesk, MAILBOX, '--default')
    folder = tmp_path / 'in' / 'sub'
    folder.mkdir(parents=True)
    (folder / 'one.eml').write_bytes(make_message())
    (folder / 'up').symlink_to('..')
    result = run_postdesk('replay', str(tmp_path / 'in'))
    assert result.returncode == 0, result.stdout + result.stderr
    assert conn.execute('SELECT count(*) FROM raw_message').fetchone()[0] == 1
    assert 'symbolic link loop' in result.stderr
