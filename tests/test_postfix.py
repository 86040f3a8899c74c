"""End to end with a real mail server: Postfix relays two test domains to `postdesk serve`, one over LMTP and one
over SMTP, and keeps a message queued while postdesk answers 451.

Postfix comes from Debian's packages and is installed here if missing (about 20 seconds); this test is skipped,
with the reason, only where it cannot be installed or started (not root, no package source). Postfix runs from a
private configuration directory (/etc/postfix is not touched) and is stopped afterwards.
"""
from __future__ import annotations

import json
import os
import shutil
import smtplib
import subprocess
import time

import psycopg
import pytest

from mails import make_message
from test_serve import Server, _set_database_available, tickets_for, wait_for

SMTPD_PORT = 10025
LMTP_DOMAIN, SMTP_DOMAIN = 'lmtp.postdesk.test', 'smtp.postdesk.test'


def _run(*command: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def ensure_postfix() -> str | None:
    """None when Postfix is ready to use, else why it cannot be."""
    if os.geteuid() != 0:
        return 'Postfix must be started as root, and the tests do not run as root'
    if shutil.which('postfix') is None:
        env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
        install = subprocess.run(['apt-get', 'install', '-y', '-q', '--no-install-recommends', 'postfix'],
                                 capture_output=True, text=True, timeout=600, env=env)
        if install.returncode != 0 or shutil.which('postfix') is None:
            return 'Postfix could not be installed from Debian packages: %s' % install.stderr.strip()[-500:]
    return None


@pytest.fixture(scope='module')
def postfix_available():
    reason = ensure_postfix()
    if reason:
        print('SKIPPED: %s' % reason)
        pytest.skip(reason)


class Postfix:
    """A Postfix instance with its own configuration directory, relaying the test domains to postdesk."""

    def __init__(self, directory, lmtp_port: int, smtp_port: int):
        self.conf = str(directory)
        for name in ('main.cf', 'master.cf', 'dynamicmaps.cf'):
            shutil.copy(os.path.join('/etc/postfix', name), self.conf)
        if os.path.isdir('/etc/postfix/dynamicmaps.cf.d'):
            shutil.copytree('/etc/postfix/dynamicmaps.cf.d', os.path.join(self.conf, 'dynamicmaps.cf.d'))
        self.log = os.path.join(self.conf, 'postfix.log')
        transport = os.path.join(self.conf, 'transport')
        with open(transport, 'w') as handle:
            handle.write('%s lmtp:inet:127.0.0.1:%d\n%s smtp:[127.0.0.1]:%d\n'
                         % (LMTP_DOMAIN, lmtp_port, SMTP_DOMAIN, smtp_port))
        self.postconf('-e', 'myhostname=mx.postdesk.test', 'mydestination=', 'inet_interfaces=127.0.0.1',
                      'inet_protocols=ipv4', 'relay_domains=%s %s' % (LMTP_DOMAIN, SMTP_DOMAIN),
                      'transport_maps=hash:%s' % transport, 'mynetworks=127.0.0.0/8',
                      'smtpd_relay_restrictions=permit_mynetworks reject_unauth_destination', 'alias_maps=',
                      'alias_database=', 'maillog_file=%s' % self.log, 'maillog_file_prefixes=/var, %s' % self.conf,
                      'smtp_tls_security_level=none', 'lmtp_tls_security_level=none', 'smtpd_tls_security_level=none',
                      'compatibility_level=3.6')
        self.postconf('-M#', 'smtp/inet')
        self.postconf('-M', '127.0.0.1:%d/inet=127.0.0.1:%d inet n - n - - smtpd' % (SMTPD_PORT, SMTPD_PORT))
        self.postconf('-F', '*/*/chroot = n')
        self.check(_run('postmap', '-c', self.conf, transport))
        self.check(_run('postfix', '-c', self.conf, 'start'))

    def postconf(self, *args: str) -> None:
        self.check(_run('postconf', '-c', self.conf, *args))

    @staticmethod
    def check(done: subprocess.CompletedProcess) -> None:
        assert done.returncode == 0, done.stdout + done.stderr

    def queue(self) -> list[dict]:
        done = _run('postqueue', '-c', self.conf, '-j')
        return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]

    def flush(self) -> None:
        self.check(_run('postqueue', '-c', self.conf, '-f'))

    def stop(self) -> None:
        _run('postsuper', '-c', self.conf, '-d', 'ALL')
        _run('postfix', '-c', self.conf, 'stop')

    def log_text(self) -> str:
        try:
            with open(self.log) as handle:
                return handle.read()[-3000:]
        except OSError:
            return ''


@pytest.fixture
def relay(postfix_available, db_url, tmp_path, conn):
    for domain in (LMTP_DOMAIN, SMTP_DOMAIN):
        conn.execute("INSERT INTO mailbox (address, name) VALUES (%s, 'Support')", ('support@' + domain,))
    server = Server(db_url, tmp_path)
    conf = tmp_path / 'postfix'
    conf.mkdir()
    postfix = None
    try:
        postfix = Postfix(conf, server.lmtp_port, server.smtp_port)
        yield server, postfix
    finally:
        if postfix is not None:
            postfix.stop()
        server.stop()


def send_through_postfix(recipient: str, message_id: str) -> None:
    with smtplib.SMTP('127.0.0.1', SMTPD_PORT, timeout=30) as client:
        client.sendmail('anna@customer.example', [recipient],
                        make_message(to=recipient, message_id='<%s>' % message_id, subject='via postfix'))


def test_postfix_relays_over_lmtp_and_smtp_into_tickets(relay, conn):
    server, postfix = relay
    send_through_postfix('support@' + LMTP_DOMAIN, 'pf-lmtp@customer.example')
    send_through_postfix('support@' + SMTP_DOMAIN, 'pf-smtp@customer.example')
    try:
        wait_for(lambda: tickets_for(conn, 'pf-lmtp@customer.example') and tickets_for(conn, 'pf-smtp@customer.example'),
                 timeout=60)
    except AssertionError:
        pytest.fail('not delivered; postfix log:\n%s' % postfix.log_text())
    rows = dict(conn.execute("SELECT m.address, r.source FROM interaction i JOIN mailbox m USING (mailbox_id) "
                             "JOIN raw_message r USING (raw_id)").fetchall())
    assert rows == {'support@' + LMTP_DOMAIN: 'lmtp', 'support@' + SMTP_DOMAIN: 'smtp'}
    received = conn.execute("SELECT data FROM raw_message WHERE source = 'lmtp'").fetchone()[0]
    assert b'by mx.postdesk.test (Postfix)' in bytes(received), 'Postfix added its own trace header'


def test_postfix_keeps_the_message_while_postdesk_answers_451(relay, server_url, db_url):
    server, postfix = relay
    _set_database_available(server_url, db_url, False)
    try:
        send_through_postfix('support@' + LMTP_DOMAIN, 'pf-deferred@customer.example')
        deferred = wait_for(lambda: [m for m in postfix.queue() if m.get('queue_name') == 'deferred'], timeout=60)
        reasons = ' '.join(r.get('delay_reason', '') for m in deferred for r in m.get('recipients', []))
        assert '451' in reasons or '4.3.0' in reasons, reasons
    finally:
        _set_database_available(server_url, db_url, True)
    with psycopg.connect(db_url, autocommit=True) as conn:
        def flushed_and_delivered():
            postfix.flush()                  # what the operator runs once the database is back
            time.sleep(1)
            return tickets_for(conn, 'pf-deferred@customer.example')
        try:
            wait_for(flushed_and_delivered, timeout=60)
        except AssertionError:
            pytest.fail('not delivered after recovery; postfix log:\n%s' % postfix.log_text())
        assert conn.execute('SELECT count(*) FROM interaction').fetchone()[0] == 1
    wait_for(lambda: postfix.queue() == [] or None, timeout=30)
