"""Several intake processes on one database: `postdesk serve --workers 4`, and two `postdesk serve` processes
on different ports (as two MX hosts behind one database would be). Real processes, SMTP, PostgreSQL."""
from __future__ import annotations

import smtplib
import threading

import psycopg

from mails import MAILBOX, make_message
from test_serve import Server, mailbox, wait_for   # noqa: F401 (fixture)

SENDER = 'Anna Schmidt <anna@customer.example>'


def send_all(port: int, messages: list[bytes], errors: list) -> None:
    try:
        with smtplib.SMTP('127.0.0.1', port, timeout=30) as client:
            for message in messages:
                client.sendmail('anna@customer.example', [MAILBOX], message)
    except (smtplib.SMTPException, OSError) as error:
        errors.append(repr(error))


def in_parallel(jobs: list[tuple[int, list[bytes]]]) -> list:
    errors: list = []
    threads = [threading.Thread(target=send_all, args=(port, messages, errors)) for port, messages in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return errors


def test_four_intake_workers_hold_the_acknowledgement_limit_exactly(db_url, tmp_path, mailbox, conn):
    conn.execute("UPDATE mailbox SET ack_template = 'Ticket {ref}: we have your message.' WHERE address = %s",
                 (MAILBOX,))
    settings = tmp_path / 'postdesk.toml'
    settings.write_text('[intake]\nbatch_size = 3\n\n[outbound]\nack_per_hour = 10\n')   # small batches: all
    running = Server(db_url, tmp_path, {'POSTDESK_CONFIG': str(settings)}, args=('--workers', '4'))  # 4 busy
    try:
        burst = [make_message(sender=SENDER, message_id='<burst-%d@customer.example>' % n, subject='burst %d' % n)
                 for n in range(50)]
        assert in_parallel([(running.smtp_port, burst[n::5]) for n in range(5)]) == []
        wait_for(lambda: conn.execute('SELECT count(*) FROM ticket').fetchone()[0] == 50, timeout=120)
    finally:
        assert running.stop() == 0
    workers = conn.execute("SELECT count(DISTINCT claimed_by) FROM raw_message").fetchone()[0]
    acks = conn.execute("SELECT count(*) FROM outbox WHERE kind = 'ack'").fetchone()[0]
    assert acks == 10
    assert conn.execute("SELECT count(*) FROM raw_message WHERE state = 'done'").fetchone()[0] == 50
    assert workers == 0, 'every claim ended'


def test_two_servers_on_one_database_receiving_the_same_messages_at_once_store_each_once(
        db_url, tmp_path, mailbox, conn):
    (tmp_path / 'a').mkdir()
    (tmp_path / 'b').mkdir()
    first, second = Server(db_url, tmp_path / 'a'), Server(db_url, tmp_path / 'b')
    try:
        messages = [make_message(sender=SENDER, message_id='<mx-%d@customer.example>' % n, subject='mx %d' % n,
                                 in_reply_to='<mx-%d@customer.example>' % (n - 1) if n % 4 else None)
                    for n in range(40)]
        assert in_parallel([(first.smtp_port, messages), (second.smtp_port, messages),
                            (first.smtp_port, messages[::-1]), (second.smtp_port, messages[::-1])]) == []
        wait_for(lambda: conn.execute("SELECT count(*) FROM raw_message WHERE state = 'pending'").fetchone()[0] == 0
                 and conn.execute('SELECT count(*) FROM raw_message').fetchone()[0] == 160, timeout=120)
    finally:
        assert first.stop() == 0 and second.stop() == 0
    total, distinct = conn.execute('SELECT count(*), count(DISTINCT message_id) FROM interaction').fetchone()
    assert (total, distinct) == (40, 40)
    assert conn.execute("SELECT count(*) FROM raw_message WHERE state = 'done'").fetchone()[0] == 160
    assert conn.execute('SELECT count(*) FROM quarantine').fetchone()[0] == 0


def test_a_sender_another_writer_commits_while_a_batch_waits_for_it_is_found_not_lost(db_url, conn):
    """Two writers take the same new sender at once: the batch whose insert waited for the other's commit gets
    the person the other committed (its own statement's snapshot cannot see it; the next statement does)."""
    from ticketing.store.batches import upsert_persons
    with psycopg.connect(db_url) as other, psycopg.connect(db_url) as batch:
        other.execute("INSERT INTO person (email, full_name) VALUES ('anna@customer.example', 'Anna')")
        found: list = []
        waiting = threading.Thread(target=lambda: found.append(
            upsert_persons(batch, {'anna@customer.example': 'Anna S', 'ben@customer.example': 'Ben'})))
        waiting.start()
        wait_for(lambda: conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                      "AND datname = current_database()").fetchone()[0] == 1, timeout=10)
        other.commit()
        waiting.join(10)
        batch.commit()
    persons = dict(conn.execute('SELECT email, person_id FROM person').fetchall())
    assert found == [{'anna@customer.example': persons['anna@customer.example'],
                      'ben@customer.example': persons['ben@customer.example']}]
    assert len(persons) == 2
