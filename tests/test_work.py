"""Agents' work on a real PostgreSQL, through the operations the HTTP API calls (Genesys, seeds 001 and 004):
new mail becomes queued work, ready agents are offered it, accept, reject, complete, hand it on, and every change
is audited and reported as an event to the agents concerned."""
from __future__ import annotations

import psycopg
import pytest

from mails import MAILBOX, make_message
from ticketing.intake import Intake
from ticketing.model import Agent, SourceMessage
from ticketing.operations import genesys
from ticketing.operations.offering import OfferSettings, expire_invitations, offer_work, set_ready
from ticketing.store import queues
from ticketing.store.mailboxes import add_mailbox

SETTINGS = OfferSettings(invitation_timeout=30, presence=60)


def make_agent(conn, login: str, mailbox_id: int, queue_id: int, capacity: int = 1) -> Agent:
    agent_id = conn.execute("INSERT INTO agent (login, full_name, email, capacity) VALUES (%s, %s, %s, %s) "
                            "RETURNING agent_id", (login, login.title(), '%s@helpdesk.example' % login,
                                                   capacity)).fetchone()[0]
    conn.execute('INSERT INTO agent_mailbox (agent_id, mailbox_id) VALUES (%s, %s)', (agent_id, mailbox_id))
    queues.join_queue(conn, agent_id, queue_id)
    queues.ensure_agent_workbins(conn, agent_id)
    return Agent(agent_id, login, login.title(), '%s@helpdesk.example' % login, 'agent', True, (mailbox_id,))


@pytest.fixture
def desk(conn, config):
    mailbox = add_mailbox(conn, MAILBOX, 'Support', '', 'Medium', 'reopen', True)
    agents = [make_agent(conn, login, mailbox.mailbox_id, mailbox.queue_id) for login in ('ann', 'bob')]
    return mailbox, agents


def receive(conn, config, count: int = 1, **changes) -> list[int]:
    messages = [SourceMessage(make_message(message_id='<q%d-%s@customer.example>' % (n, changes.get('tag', '')),
                                           subject='Question %d' % n), 'q%d.eml' % n) for n in range(count)]
    return [o.interaction_id for o in Intake(conn, config).store_batch(messages)]


def state_of(conn, interaction_id: int) -> tuple:
    return conn.execute('SELECT state, invited_id, owner_id, queue_id, workbin_id FROM interaction '
                        'WHERE interaction_id = %s', (interaction_id,)).fetchone()


def events_for(conn, agent: Agent) -> list[dict]:
    return [r[0] for r in conn.execute('SELECT data FROM event WHERE agent_id = %s ORDER BY event_id',
                                       (agent.agent_id,)).fetchall()]


def ready(conn, *agents: Agent) -> None:
    for agent in agents:
        set_ready(conn, agent, True)


# ----------------------------------------------------------------------------------------------- queueing

def test_a_customer_message_is_queued_work_in_its_mailboxs_queue(conn, config, desk):
    mailbox, _ = desk
    [interaction_id] = receive(conn, config)
    assert state_of(conn, interaction_id) == ('Queued', None, None, mailbox.queue_id, None)


def test_auto_replies_and_follow_ups_on_unfinished_work_are_not_work_of_their_own(conn, config, desk):
    [question] = receive(conn, config)
    [follow_up] = [o.interaction_id for o in Intake(conn, config).store_batch([SourceMessage(make_message(
        message_id='<f@customer.example>', in_reply_to='<q0-@customer.example>'), 'f.eml')])]
    [auto] = [o.interaction_id for o in Intake(conn, config).store_batch([SourceMessage(make_message(
        message_id='<a@customer.example>', headers={'Auto-Submitted': 'auto-replied'}), 'a.eml')])]
    assert state_of(conn, follow_up)[0] is None and state_of(conn, auto)[0] is None
    assert state_of(conn, question)[0] == 'Queued'


# ------------------------------------------------------------------------------------------------ offering

def test_a_ready_agent_is_offered_the_oldest_queued_interaction_up_to_its_capacity(conn, config, desk):
    _, (ann, _) = desk
    first, second = receive(conn, config, 2)
    ready(conn, ann)
    assert offer_work(conn, SETTINGS) == 1
    assert state_of(conn, first)[:2] == ('Invited', ann.agent_id)
    assert state_of(conn, second)[0] == 'Queued'
    [event] = events_for(conn, ann)
    assert event['notificationType'] == 'NewInteraction' and event['interaction']['id'] == str(first)
    assert event['interaction']['capabilities'] == ['Accept', 'Reject']


def test_accept_then_complete_ends_the_work_and_frees_the_agent(conn, config, desk):
    _, (ann, _) = desk
    first, second = receive(conn, config, 2)
    ready(conn, ann)
    offer_work(conn, SETTINGS)
    assert genesys.perform(conn, ann, first, {'operationName': 'Accept'}) == {'status': 'ok'}
    assert state_of(conn, first)[:3] == ('Accepted', None, ann.agent_id)
    assert offer_work(conn, SETTINGS) == 0                         # capacity 1: busy
    assert genesys.perform(conn, ann, first, {'operationName': 'Complete'}) == {'statusCode': 0}
    assert state_of(conn, first)[0] == 'Completed'
    assert offer_work(conn, SETTINGS) == 1 and state_of(conn, second)[:2] == ('Invited', ann.agent_id)


def test_a_rejected_interaction_is_offered_to_another_agent(conn, config, desk):
    _, (ann, bob) = desk
    [first] = receive(conn, config)
    ready(conn, ann)
    offer_work(conn, SETTINGS)
    ready(conn, bob)
    assert genesys.perform(conn, ann, first, {'operationName': 'Reject'}) == {'status': 'ok'}
    offer_work(conn, SETTINGS)
    assert state_of(conn, first)[:2] == ('Invited', bob.agent_id)


def test_a_rejected_interaction_comes_back_to_the_rejecter_when_nobody_else_is_ready(conn, config, desk):
    _, (ann, _) = desk
    [first] = receive(conn, config)
    ready(conn, ann)
    offer_work(conn, SETTINGS)
    genesys.perform(conn, ann, first, {'operationName': 'Reject'})
    offer_work(conn, SETTINGS)
    assert state_of(conn, first)[:2] == ('Invited', ann.agent_id)


def test_an_unanswered_invitation_goes_back_to_the_queue_after_its_timeout(conn, config, desk):
    _, (ann, bob) = desk
    [first] = receive(conn, config)
    ready(conn, ann)
    offer_work(conn, SETTINGS)
    assert expire_invitations(conn, SETTINGS) == 0
    ready(conn, bob)
    assert expire_invitations(conn, OfferSettings(invitation_timeout=0, presence=60)) == 1
    assert state_of(conn, first)[:2] == ('Queued', None)
    offer_work(conn, SETTINGS)
    assert state_of(conn, first)[:2] == ('Invited', bob.agent_id)


def test_an_agent_who_is_not_ready_is_offered_nothing(conn, config, desk):
    _, (ann, _) = desk
    receive(conn, config)
    assert offer_work(conn, SETTINGS) == 0
    ready(conn, ann)
    set_ready(conn, ann, False)
    assert offer_work(conn, SETTINGS) == 0


# ------------------------------------------------------------------------------------- failures change nothing

def accepted(conn, config, agent: Agent) -> int:
    [interaction_id] = receive(conn, config, tag=agent.login)
    ready(conn, agent)
    offer_work(conn, SETTINGS)
    genesys.perform(conn, agent, interaction_id, {'operationName': 'Accept'})
    set_ready(conn, agent, False)
    return interaction_id


def test_complete_by_someone_who_does_not_own_it_changes_nothing(conn, config, desk):
    _, (ann, bob) = desk
    interaction_id = accepted(conn, config, ann)
    with pytest.raises(genesys.WorkError) as failure:
        genesys.perform(conn, bob, interaction_id, {'operationName': 'Complete'})
    assert failure.value.status == 409
    assert state_of(conn, interaction_id)[:3] == ('Accepted', None, ann.agent_id)


def test_accept_of_an_interaction_not_offered_to_the_caller_changes_nothing(conn, config, desk):
    _, (ann, bob) = desk
    [interaction_id] = receive(conn, config)
    ready(conn, ann)
    offer_work(conn, SETTINGS)
    with pytest.raises(genesys.WorkError):
        genesys.perform(conn, bob, interaction_id, {'operationName': 'Accept'})
    assert state_of(conn, interaction_id)[:2] == ('Invited', ann.agent_id)


def test_an_interaction_of_another_mailbox_is_not_found(conn, config, desk):
    _, (ann, _) = desk
    other = add_mailbox(conn, 'sales@helpdesk.example', 'Sales', '', 'Medium', 'reopen', False)
    stranger = make_agent(conn, 'eve', other.mailbox_id, other.queue_id)
    interaction_id = accepted(conn, config, ann)
    with pytest.raises(genesys.NotFound) as failure:
        genesys.perform(conn, stranger, interaction_id, {'operationName': 'Complete'})
    assert failure.value.status == 404
    with pytest.raises(genesys.NotFound) as missing:
        genesys.perform(conn, stranger, 999999, {'operationName': 'Complete'})
    assert str(missing.value).replace('999999', 'X') == str(failure.value).replace(str(interaction_id), 'X')


# ----------------------------------------------------------------------------------------- handing it on

def test_place_in_queue_ends_ownership_and_queues_it_there(conn, config, desk):
    _, (ann, _) = desk
    interaction_id = accepted(conn, config, ann)
    queue_id, _ = queues.add_queue(conn, 'Billing')
    assert genesys.perform(conn, ann, interaction_id, {'operationName': 'PlaceInQueue', 'queueName': 'Billing'}) \
        == {'status': 'ok'}
    assert state_of(conn, interaction_id)[:4] == ('Queued', None, None, queue_id)


def test_place_in_an_unknown_queue_is_an_error_body_and_changes_nothing(conn, config, desk):
    _, (ann, _) = desk
    interaction_id = accepted(conn, config, ann)
    with pytest.raises(genesys.NotFound):
        genesys.perform(conn, ann, interaction_id, {'operationName': 'PlaceInQueue', 'queueName': 'Nowhere'})
    assert state_of(conn, interaction_id)[0] == 'Accepted'


def test_transfer_gives_ownership_to_another_agent(conn, config, desk):
    _, (ann, bob) = desk
    interaction_id = accepted(conn, config, ann)
    assert genesys.perform(conn, ann, interaction_id, {'operationName': 'Transfer', 'userId': 'bob'}) == \
        {'statusCode': 0}
    assert state_of(conn, interaction_id)[2] == bob.agent_id
    assert events_for(conn, bob)[-1]['notificationType'] == 'NewInteraction'
    audit = conn.execute("SELECT action, modifier, assigned_to FROM status_audit WHERE interaction_id = %s "
                         "AND target = 'work' ORDER BY audit_id", (interaction_id,)).fetchall()
    assert audit[-1] == ('Transferred', 'ann', 'bob')


def test_user_data_is_merged_and_deleted_by_key(conn, config, desk):
    _, (ann, _) = desk
    interaction_id = accepted(conn, config, ann)
    genesys.perform(conn, ann, interaction_id, {'operationName': 'UpdateUserData',
                                                'userData': {'a': 1, 'nested': {'b': [1, 2]}}})
    genesys.perform(conn, ann, interaction_id, {'operationName': 'AttachUserData', 'userData': {'c': 'x'}})
    genesys.perform(conn, ann, interaction_id, {'operationName': 'DeleteUserData', 'userData': {'a': None}})
    data = conn.execute('SELECT user_data FROM interaction WHERE interaction_id = %s', (interaction_id,)).fetchone()[0]
    assert data == {'nested': {'b': [1, 2]}, 'c': 'x'}
    assert events_for(conn, ann)[-1]['notificationType'] == 'PropertiesUpdated'


def test_pull_from_an_agent_group_workbin_takes_it_and_reports_item_removed(conn, config, desk):
    _, (ann, bob) = desk
    queues.join_group(conn, ann.agent_id, 'agent', 'Tier2')
    queues.join_group(conn, bob.agent_id, 'agent', 'Tier2')
    workbin = queues.add_group_workbin(conn, 'Escalations', 'Tier2', None)
    interaction_id = accepted(conn, config, ann)
    genesys.perform(conn, ann, interaction_id, {'operationName': 'PlaceInWorkbin', 'workbin': 'Escalations'})
    assert state_of(conn, interaction_id)[0] == 'InWorkbin'
    answer = genesys.pull_from_workbin(conn, bob, str(workbin.workbin_id), {'operationName': 'PullInteraction',
                                                                           'id': str(interaction_id)})
    assert answer['statusCode'] == 0 and isinstance(answer['referenceId'], int)
    assert state_of(conn, interaction_id)[:3] == ('Accepted', None, bob.agent_id)
    removed = [e for e in events_for(conn, ann) if e.get('action') == 'ItemRemoved']
    assert removed[-1]['agentGroup'] == 'Tier2' and removed[-1]['messageType'] == 'WorkbinStateChangeMessage'
    with pytest.raises(genesys.WorkError):                          # pulled already
        genesys.pull_from_workbin(conn, ann, str(workbin.workbin_id), {'operationName': 'PullInteraction',
                                                                      'id': str(interaction_id)})


def test_reply_starts_a_draft_that_cancel_abandons(conn, config, desk):
    _, (ann, _) = desk
    interaction_id = accepted(conn, config, ann)
    started = genesys.perform(conn, ann, interaction_id, {'operationName': 'Reply'})
    draft_id = int(started['id'])
    draft = conn.execute('SELECT state, status, owner_id, subject, body_html, to_addresses FROM interaction '
                         'WHERE interaction_id = %s', (draft_id,)).fetchone()
    assert draft[:3] == ('Draft', 'Draft', ann.agent_id)
    assert draft[3].startswith('Re: [ref#: ') and 'wrote:' in draft[4]
    assert draft[5] == [{'name': 'Anna Schmidt', 'email': 'anna@customer.example'}]
    assert genesys.perform(conn, ann, draft_id, {'operationName': 'Cancel'}) == {'status': 0}
    assert conn.execute('SELECT state, status FROM interaction WHERE interaction_id = %s',
                        (draft_id,)).fetchone() == ('Cancelled', 'Cancelled')
    assert conn.execute('SELECT count(*) FROM outbox').fetchone()[0] == 0
