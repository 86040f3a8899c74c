"""Which mailbox a message is for: one rule, whichever way the message arrives (SMTP, LMTP, replay, quarantine
retry). The rule itself is tested without a database; the last tests send the same messages both ways."""
from __future__ import annotations

import json
import smtplib

from ingest import parse_message
from mails import make_message
from test_serve import Server, wait_for
from ticketing.model import Mailbox
from ticketing.routing import directory_of, mailbox_for, mailboxes_for_recipients, route_by_headers

SUPPORT = Mailbox(1, 'support@a.example', 'Support', '', 'Medium', 'reopen', True)
HELP = Mailbox(2, 'Help@B.example', 'Help', '', 'Medium', 'reopen', False, catch_all=True)
SALES = Mailbox(3, 'sales@a.example', 'Sales', '', 'Medium', 'reopen', False)
DIRECTORY = directory_of([SALES, HELP, SUPPORT])


# -------------------------------------------------------------------------------------------- the rule

def test_an_address_names_its_mailbox_case_insensitively():
    assert mailbox_for(DIRECTORY, 'SALES@a.example') == SALES
    assert mailbox_for(DIRECTORY, '<help@b.example>') == HELP


def test_a_plus_tag_is_ignored():
    assert mailbox_for(DIRECTORY, 'sales+orders@a.example') == SALES


def test_the_catch_all_mailbox_takes_unknown_addresses_of_its_own_domain_only():
    assert mailbox_for(DIRECTORY, 'anyone@b.example') == HELP
    assert mailbox_for(DIRECTORY, 'anyone@a.example') is None
    assert mailbox_for(DIRECTORY, 'not-an-address') is None


def test_envelope_recipients_name_each_mailbox_once():
    found = mailboxes_for_recipients(DIRECTORY, ['sales@a.example', 'x@b.example', 'SALES+1@a.example', 'no@c.example'])
    assert found == [SALES, HELP]


def test_headers_route_by_the_first_address_that_names_a_mailbox_else_the_default():
    to_catch_all = parse_message(make_message(to='Someone <sales@b.example>', headers={'Cc': 'sales@a.example'}))
    assert route_by_headers(DIRECTORY, to_catch_all) == HELP
    delivered = parse_message(make_message(to='x@nowhere.example', headers={'Delivered-To': 'sales+x@a.example'}))
    assert route_by_headers(DIRECTORY, delivered) == SALES
    elsewhere = parse_message(make_message(to='x@nowhere.example'))
    assert route_by_headers(DIRECTORY, elsewhere) == SUPPORT


def test_without_a_default_the_first_created_mailbox_takes_what_no_address_names():
    directory = directory_of([SALES, HELP])
    assert route_by_headers(directory, parse_message(make_message(to='x@nowhere.example'))) == HELP


# --------------------------------------------------------------------------- the same rule both ways

def add_mailboxes(run_postdesk) -> None:
    assert run_postdesk('mailbox', 'add', 'support@a.example', '--default').returncode == 0
    assert run_postdesk('mailbox', 'add', 'help@b.example', '--catch-all').returncode == 0


def mailbox_of(conn, message_id: str) -> list[str]:
    return [r[0] for r in conn.execute('SELECT m.address FROM interaction i JOIN mailbox m USING (mailbox_id) '
                                       'WHERE i.message_id = %s', (message_id,)).fetchall()]


def test_catch_all_mail_goes_to_the_same_mailbox_by_replay_and_by_smtp(run_postdesk, db_url, tmp_path, conn):
    add_mailboxes(run_postdesk)
    replayed = tmp_path / 'replayed.eml'
    replayed.write_bytes(make_message(to='sales@b.example', message_id='<replayed@customer.example>'))
    done = run_postdesk('replay', '--json', str(replayed))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)['Outcome'] == 'new'
    server = Server(db_url, tmp_path)
    try:
        with smtplib.SMTP('127.0.0.1', server.smtp_port) as client:
            client.sendmail('anna@customer.example', ['sales@b.example'],
                            make_message(to='sales@b.example', message_id='<smtp@customer.example>'))
            client.sendmail('anna@customer.example', ['sales@b.example'], replayed.read_bytes())
        wait_for(lambda: conn.execute("SELECT count(*) = 0 FROM raw_message WHERE state = 'pending'").fetchone()[0])
    finally:
        server.stop()
    assert mailbox_of(conn, 'smtp@customer.example') == ['help@b.example']
    assert mailbox_of(conn, 'replayed@customer.example') == ['help@b.example']     # stored once: a duplicate


def test_quarantine_retry_routes_by_the_same_rule(run_postdesk, tmp_path, conn):
    message = tmp_path / 'early.eml'
    message.write_bytes(make_message(to='sales@b.example', message_id='<early@customer.example>'))
    assert run_postdesk('replay', str(message)).returncode == 1          # no mailbox yet: quarantined
    add_mailboxes(run_postdesk)
    assert run_postdesk('quarantine', 'retry').returncode == 0
    assert mailbox_of(conn, 'early@customer.example') == ['help@b.example']
