"""The status vocabulary and its transitions: what each change allows and audits, and the schema's CHECK
constraints holding the same values as `ticketing.statuses`."""
from __future__ import annotations

import re

import psycopg
import pytest

from ticketing import statuses
from ticketing.statuses import (CLOSED, FAILED, OPEN, SENT, UNSENT, WAITING_FOR_CUSTOMER, TransitionError,
                                interaction_transition, reply_transition, require, ticket_transition)


def test_answering_a_ticket_closes_it_leaves_it_open_or_waits_for_the_customer():
    assert (reply_transition(False, False).after, reply_transition(False, False).base) == (CLOSED, 'closed')
    assert (reply_transition(True, False).after, reply_transition(True, False).base) == (OPEN, 'active')
    waiting = reply_transition(False, True)          # waiting is an open state, whatever leave_open says
    assert (waiting.after, waiting.base, waiting.action) == (WAITING_FOR_CUSTOMER, 'active',
                                                             'Sent, left open, expecting a reply')


def test_a_customer_answer_reopens_only_a_ticket_waiting_for_it():
    answered = ticket_transition('customer_answered')
    assert require(answered, WAITING_FOR_CUSTOMER).after == OPEN
    with pytest.raises(TransitionError):
        require(answered, CLOSED)


def test_an_outbound_message_is_queued_sent_or_failed_and_a_failed_one_can_be_retried():
    assert require(interaction_transition('queue'), None).after == UNSENT
    assert require(interaction_transition('deliver'), UNSENT).after == SENT
    assert require(interaction_transition('fail'), UNSENT).after == FAILED
    assert require(interaction_transition('retry'), FAILED).after == UNSENT
    with pytest.raises(TransitionError):
        require(interaction_transition('retry'), SENT)         # a sent message is never sent twice
    with pytest.raises(TransitionError):
        require(interaction_transition('queue'), UNSENT)       # only a new row is queued


def test_a_bounce_fails_a_sent_or_unsent_message_and_says_why():
    bounce = interaction_transition('bounce')
    assert bounce.allows(SENT) and bounce.allows(UNSENT) and not bounce.allows(FAILED)
    assert bounce.audit_action('failed 5.1.1 for anna@customer.example') == \
        'Bounced: failed 5.1.1 for anna@customer.example'


def test_base_statuses_have_the_names_ticket_entity_shows():
    assert [statuses.base_status_name(s) for s in statuses.BASE_STATUSES] == ['Active', 'Closed', 'Postponed',
                                                                              'Deleted']


def check_values(conn: psycopg.Connection, constraint: str) -> set[str]:
    definition = conn.execute('SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = %s',
                              (constraint,)).fetchone()[0]
    return set(re.findall(r"'([^']*)'", definition))


@pytest.mark.parametrize('constraint, values', [
    ('ticket_status_known', statuses.TICKET_STATUSES),
    ('interaction_status_known', statuses.INTERACTION_STATUSES),
    ('ticket_base_status_check', statuses.BASE_STATUSES),
    ('raw_message_state_check', statuses.SPOOL_STATES),
    ('outbox_state_check', statuses.OUTBOX_STATES),
    ('quarantine_state_check', statuses.QUARANTINE_STATES),
    ('status_audit_target_known', (statuses.TICKET_TARGET, statuses.INTERACTION_TARGET, statuses.WORK_TARGET)),
    ('agent_role_known', statuses.AGENT_ROLES),
    ('interaction_state_known', statuses.WORK_STATES),
])
def test_schema_checks_hold_the_vocabulary_of_the_statuses_module(conn, constraint, values):
    assert check_values(conn, constraint) == set(values)


def test_the_database_refuses_a_status_outside_the_vocabulary(conn):
    conn.execute("INSERT INTO mailbox (address) VALUES ('support@helpdesk.example')")
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("INSERT INTO ticket (mailbox_id, title, status) VALUES (1, 't', 'Reopened')")


def test_an_agents_save_moves_the_status_by_name_or_by_base_status():
    assert statuses.agent_transition('Closed', None, OPEN).base == 'closed'
    assert statuses.agent_transition(None, 'postponed', OPEN).after == 'Postponed'
    assert statuses.agent_transition(None, 'active', WAITING_FOR_CUSTOMER) is None   # active already
    assert statuses.agent_transition(None, 'active', CLOSED).after == OPEN
    assert statuses.agent_transition('Open', None, OPEN) is None
    with pytest.raises(TransitionError):
        statuses.agent_transition('Closed', 'active', OPEN)
    assert statuses.base_status_named('postponed') == 'postponed' and statuses.base_status_named('x') is None
    assert statuses.ticket_status_named('waiting for customer') == WAITING_FOR_CUSTOMER
