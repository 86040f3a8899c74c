"""Threading and storing inbound mail into tickets, against a real PostgreSQL."""
from __future__ import annotations

import threading

import psycopg
import pytest

from mails import MAILBOX, make_bounce, make_message
from ticketing.formats.superoffice import ticket_entity as entity_json
from ticketing.intake import Intake
from ticketing.model import SourceMessage
from ticketing.store.mailboxes import add_mailbox
from ticketing.store.tickets import ticket_record


def ticket_entity(conn, ticket_id: int) -> dict:
    return entity_json(ticket_record(conn, ticket_id))


@pytest.fixture
def mailbox(conn):
    return add_mailbox(conn, MAILBOX, 'Support', 'Orders', 'High', 'reopen', True)


def replay(conn, config, *raws, mailbox=None):
    messages = [SourceMessage(raw, 'message-%d.eml' % i) for i, raw in enumerate(raws, 1)]
    return list(Intake(conn, config, mailbox).run(messages))


def count(conn, table):
    return conn.execute('SELECT count(*) FROM %s' % table).fetchone()[0]


def test_new_question_opens_ticket_with_ticketinfo(conn, config, mailbox):
    [outcome] = replay(conn, config, make_message(subject='RE: Fwd:  Order   1001 has not arrived'))
    assert outcome.outcome == 'new' and outcome.rule == 'new'
    assert outcome.ticket.title == 'Order 1001 has not arrived'
    assert (outcome.ticket.category, outcome.ticket.priority) == ('Orders', 'High')
    assert outcome.ticket.person_name == 'Anna Schmidt'
    entity = ticket_entity(conn, outcome.ticket.ticket_id)
    assert entity['BaseStatus'] == 'Active'
    assert entity['Person']['Email'] == 'anna@customer.example'
    assert entity['NumMessages'] == 1
    assert entity['Messages'][0]['MessageId'] == 'q1@customer.example'
    assert entity['Messages'][0]['Type'] == 'Customer Email'
    audit = conn.execute('SELECT action, status_before, status_after FROM status_audit').fetchall()
    assert audit == [('Created from email', None, 'Open')]


def test_empty_subject_gives_no_subject_title(conn, config, mailbox):
    [outcome] = replay(conn, config, make_message(subject='Re: [ref#: 77-78]  '))
    assert outcome.ticket.title == '(no subject)'


def test_same_message_replayed_twice_is_stored_once(conn, config, mailbox):
    raw = make_message()
    first = replay(conn, config, raw)
    tables = ('ticket', 'interaction', 'raw_message', 'status_audit', 'person')
    before = {t: count(conn, t) for t in tables}
    [second] = replay(conn, config, raw)
    assert second.outcome == 'duplicate'
    assert second.ticket.ticket_id == first[0].ticket.ticket_id
    assert {t: count(conn, t) for t in tables} == before


def test_duplicate_inside_one_batch_is_stored_once(conn, config, mailbox):
    raw = make_message()
    outcomes = replay(conn, config, raw, raw)
    assert [o.outcome for o in outcomes] == ['new', 'duplicate']
    assert count(conn, 'interaction') == 1


def test_message_without_message_id_is_still_deduplicated(conn, config, mailbox):
    raw = make_message(message_id=None)
    [first] = replay(conn, config, raw)
    [second] = replay(conn, config, raw)
    assert first.outcome == 'new' and second.outcome == 'duplicate'
    stored = conn.execute('SELECT message_id FROM interaction').fetchone()[0]
    assert stored.endswith('@sha256.postdesk.invalid')


def test_reply_with_in_reply_to_threads_onto_ticket(conn, config, mailbox):
    [question] = replay(conn, config, make_message())
    [reply] = replay(conn, config, make_message(subject='Re: something else entirely', message_id='<r1@c.example>',
                                                in_reply_to='<q1@customer.example>'))
    assert (reply.outcome, reply.rule) == ('followup', 'in-reply-to')
    assert reply.ticket.ticket_id == question.ticket.ticket_id
    assert ticket_entity(conn, question.ticket.ticket_id)['NumMessages'] == 2


def test_references_are_tried_right_to_left(conn, config, mailbox):
    replay(conn, config, make_message(message_id='<a@c.example>', subject='first'),
           make_message(message_id='<b@c.example>', subject='second'))
    [reply] = replay(conn, config, make_message(subject='Re: x', message_id='<c@c.example>',
                                                references='<a@c.example> <unknown@x.example> <b@c.example>'))
    assert reply.rule == 'references'
    assert reply.ticket.title == 'second'


def test_in_reply_to_wins_over_references(conn, config, mailbox):
    replay(conn, config, make_message(message_id='<a@c.example>', subject='first'),
           make_message(message_id='<b@c.example>', subject='second'))
    [reply] = replay(conn, config, make_message(subject='Re: x', message_id='<c@c.example>',
                                                in_reply_to='<a@c.example>', references='<b@c.example>'))
    assert (reply.rule, reply.ticket.title) == ('in-reply-to', 'first')


def test_reply_in_same_batch_threads_onto_ticket_opened_in_that_batch(conn, config, mailbox):
    outcomes = replay(conn, config, make_message(),
                      make_message(message_id='<r1@c.example>', in_reply_to='<q1@customer.example>'))
    assert [o.outcome for o in outcomes] == ['new', 'followup']
    assert outcomes[0].ticket.ticket_id == outcomes[1].ticket.ticket_id
    assert ticket_entity(conn, outcomes[0].ticket.ticket_id)['NumMessages'] == 2


def test_reply_with_subject_ref_threads_onto_ticket(conn, config, mailbox):
    [question] = replay(conn, config, make_message())
    ref = '[REF# :%d - %d]' % (question.ticket.ticket_id, question.interaction_id)
    [reply] = replay(conn, config, make_message(subject='AW: RE[2]: %s Order 1001 has not arrived' % ref,
                                                message_id='<r2@c.example>'))
    assert (reply.outcome, reply.rule) == ('followup', 'subject-ref')
    assert reply.ticket.ticket_id == question.ticket.ticket_id


def test_last_subject_ref_wins(conn, config, mailbox):
    first, second = replay(conn, config, make_message(message_id='<a@c.example>', subject='one'),
                           make_message(message_id='<b@c.example>', subject='two'))
    subject = 'Re: [ref#: %d-1] one Re: [ref#: %d-2] two' % (first.ticket.ticket_id, second.ticket.ticket_id)
    [reply] = replay(conn, config, make_message(subject=subject, message_id='<c@c.example>'))
    assert reply.ticket.ticket_id == second.ticket.ticket_id


def test_stranger_quoting_a_reference_opens_connected_ticket(conn, config, mailbox):
    [question] = replay(conn, config, make_message())
    subject = 'Re: [ref#: %d-%d] Order 1001 has not arrived' % (question.ticket.ticket_id, question.interaction_id)
    [intruder] = replay(conn, config, make_message(subject=subject, sender='Max <max@elsewhere.example>',
                                                   message_id='<x@elsewhere.example>'))
    assert (intruder.outcome, intruder.rule) == ('new', 'new')
    assert intruder.ticket.ticket_id != question.ticket.ticket_id
    assert ticket_entity(conn, intruder.ticket.ticket_id)['ConnectId'] == question.ticket.ticket_id
    assert ticket_entity(conn, question.ticket.ticket_id)['NumMessages'] == 1


def test_someone_cc_on_the_ticket_may_use_the_reference(conn, config, mailbox):
    [question] = replay(conn, config, make_message(cc='Jonas <jonas@customer.example>'))
    subject = 'Re: [ref#: %d-%d] x' % (question.ticket.ticket_id, question.interaction_id)
    [reply] = replay(conn, config, make_message(subject=subject, sender='Jonas <JONAS@customer.example>',
                                                message_id='<j@c.example>'))
    assert (reply.outcome, reply.rule) == ('followup', 'subject-ref')


def test_an_agent_may_use_the_reference(conn, config, mailbox):
    [question] = replay(conn, config, make_message())
    conn.execute("INSERT INTO agent (login, full_name, email) VALUES ('niraj', 'Niraj Raba', 'niraj@helpdesk.example')")
    subject = 'Re: [ref#: %d-%d] x' % (question.ticket.ticket_id, question.interaction_id)
    [note] = replay(conn, config, make_message(subject=subject, sender='niraj@helpdesk.example',
                                               message_id='<n@h.example>'))
    assert note.rule == 'subject-ref'


def test_reference_to_missing_ticket_opens_new_ticket(conn, config, mailbox):
    [outcome] = replay(conn, config, make_message(subject='Re: [ref#: 424242-1] Invoice'))
    assert (outcome.outcome, outcome.rule) == ('new', 'new')
    assert ticket_entity(conn, outcome.ticket.ticket_id)['ConnectId'] is None


def test_bounce_threads_onto_ticket_of_reported_message(conn, config, mailbox):
    [question] = replay(conn, config, make_message())
    [bounce] = replay(conn, config, make_bounce('q1@customer.example'))
    assert (bounce.outcome, bounce.rule) == ('followup', 'bounce')
    assert bounce.ticket.ticket_id == question.ticket.ticket_id
    message = ticket_entity(conn, question.ticket.ticket_id)['Messages'][-1]
    assert message['Type'] == 'Bounce'


def test_bounce_about_unknown_message_never_opens_a_ticket(conn, config, mailbox):
    [bounce] = replay(conn, config, make_bounce('never-sent@helpdesk.example'))
    assert bounce.outcome == 'quarantined'
    assert 'never-sent@helpdesk.example' in bounce.reason
    assert count(conn, 'ticket') == 0
    assert count(conn, 'quarantine') == 1


def close_ticket(conn, ticket_id):
    conn.execute("UPDATE ticket SET base_status = 'closed', status = 'Closed', closed_at = now() "
                 'WHERE ticket_id = %s', (ticket_id,))


def test_follow_up_to_closed_ticket_reopens_it_with_audit(conn, config, mailbox):
    [question] = replay(conn, config, make_message())
    close_ticket(conn, question.ticket.ticket_id)
    [reply] = replay(conn, config, make_message(message_id='<r@c.example>', in_reply_to='<q1@customer.example>'))
    assert reply.outcome == 'followup'
    entity = ticket_entity(conn, question.ticket.ticket_id)
    assert (entity['BaseStatus'], entity['Status'], entity['ClosedAt']) == ('Active', 'Open', None)
    audit = conn.execute('SELECT action, status_before, status_after FROM status_audit ORDER BY audit_id').fetchall()
    assert audit[-1] == ('Reopened by customer email', 'Closed', 'Open')


def test_follow_up_to_closed_ticket_opens_connected_ticket_when_mailbox_says_so(conn, config):
    box = add_mailbox(conn, MAILBOX, 'Support', '', 'Medium', 'new-ticket', True)
    [question] = replay(conn, config, make_message(), mailbox=box)
    close_ticket(conn, question.ticket.ticket_id)
    [reply] = replay(conn, config, make_message(message_id='<r@c.example>', in_reply_to='<q1@customer.example>'),
                     mailbox=box)
    assert (reply.outcome, reply.rule) == ('new', 'in-reply-to')
    assert ticket_entity(conn, reply.ticket.ticket_id)['ConnectId'] == question.ticket.ticket_id
    assert ticket_entity(conn, question.ticket.ticket_id)['BaseStatus'] == 'Closed'


def test_auto_reply_to_closed_ticket_does_not_reopen_it(conn, config, mailbox):
    [question] = replay(conn, config, make_message())
    close_ticket(conn, question.ticket.ticket_id)
    [auto] = replay(conn, config, make_message(subject='Out of office', message_id='<ooo@c.example>',
                                               in_reply_to='<q1@customer.example>',
                                               headers={'Auto-Submitted': 'auto-replied'}))
    assert auto.outcome == 'followup'
    entity = ticket_entity(conn, question.ticket.ticket_id)
    assert entity['BaseStatus'] == 'Closed'
    assert entity['Messages'][-1]['Type'] == 'Auto Reply'


def test_bounce_to_closed_ticket_does_not_reopen_it(conn, config, mailbox):
    [question] = replay(conn, config, make_message())
    close_ticket(conn, question.ticket.ticket_id)
    replay(conn, config, make_bounce('q1@customer.example'))
    assert ticket_entity(conn, question.ticket.ticket_id)['BaseStatus'] == 'Closed'


def test_same_message_id_in_another_mailbox_is_another_ticket(conn, config, mailbox):
    other = add_mailbox(conn, 'sales@helpdesk.example', 'Sales', '', 'Medium', 'reopen', False)
    raw = make_message()
    [first] = replay(conn, config, raw)
    [second] = replay(conn, config, raw, mailbox=other)
    assert second.outcome == 'new'
    assert first.ticket.ticket_id != second.ticket.ticket_id


def test_attachment_bytes_are_stored_once(conn, config, mailbox):
    logo = b'\x89PNG fake logo bytes' * 50
    replay(conn, config, make_message(message_id='<a@c.example>', attachments=[('logo.png', 'image/png', logo)]),
           make_message(message_id='<b@c.example>', attachments=[('logo.png', 'image/png', logo)]))
    assert count(conn, 'attachment') == 2
    assert count(conn, 'blob') == 1
    assert conn.execute('SELECT bool_and(has_attachment) FROM ticket').fetchone()[0] is True


def test_message_stored_meanwhile_by_another_writer_is_a_duplicate(conn, config, mailbox, db_url):
    """Two writers store the same message at the same moment: the second waits for the first's transaction on
    the unique Message-ID index, its batch fails, and the message-by-message retry reports a duplicate."""
    import threading

    import psycopg

    raw = make_message()
    first = Intake(conn, config)
    with psycopg.connect(db_url, autocommit=True) as other_conn:
        second = Intake(other_conn, config)
        result = {}
        with conn.transaction():          # the first writer's batch is stored, not yet committed
            first.store_batch([SourceMessage(raw, 'first.eml')])
            waiting = threading.Thread(target=lambda: result.update(o=second.store_batch(
                [SourceMessage(raw, 'second.eml')])))
            waiting.start()
            waiting.join(timeout=1.0)
            assert waiting.is_alive(), 'the second writer should wait for the first transaction'
        waiting.join(timeout=30)
    [outcome] = result['o']
    assert outcome.outcome == 'duplicate'
    assert count(conn, 'interaction') == 1 and count(conn, 'ticket') == 1 and count(conn, 'raw_message') == 1


@pytest.mark.parametrize('first', ['question', 'reply'])
def test_a_reply_and_its_question_stored_at_once_by_two_writers_share_a_ticket(db_url, conn, config, mailbox, first):
    """One writer has stored one of the two and not committed yet when the other writer stores the other: the
    second waits for the first's commit, sees its rows, and threads onto its ticket (either way round)."""
    question = make_message(message_id='<race-q@customer.example>', subject='Where is my order?')
    reply = make_message(message_id='<race-r@customer.example>', subject='Re: Where is my order?',
                         in_reply_to='<race-q@customer.example>')
    held, other = (question, reply) if first == 'question' else (reply, question)
    with psycopg.connect(db_url) as holder, psycopg.connect(db_url, autocommit=True) as writer:
        holder.execute('SELECT 1')                 # a transaction the first batch's savepoint stays inside
        [held_outcome] = Intake(holder, config, mailbox).store_batch([SourceMessage(held, 'held.eml')])
        outcomes: list = []
        second = threading.Thread(target=lambda: outcomes.extend(
            Intake(writer, config, mailbox).store_batch([SourceMessage(other, 'other.eml')])))
        second.start()
        for _ in range(100):                       # until the second writer waits for the first (or is done)
            if not second.is_alive() or conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'advisory' "
                    'AND datname = current_database()').fetchone()[0]:
                break
            second.join(0.05)
        holder.commit()
        second.join(30)
    [other_outcome] = outcomes
    assert other_outcome.ticket.ticket_id == held_outcome.ticket.ticket_id
    assert count(conn, 'ticket') == 1
