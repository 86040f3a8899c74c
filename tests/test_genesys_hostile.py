"""Agents' work under hostile and concurrent use, on real `postdesk serve` processes and a real PostgreSQL: another
mailbox's agent in the same group or queue learns nothing of an interaction; values nested without end, NaN and
wrong types are 400 before anything is stored; a client connecting many times at once gets each event once; a
draft is sent once, by its writer; the pools outlive connections PostgreSQL closed under them."""
from __future__ import annotations

import concurrent.futures
import json
import time

import httpx

from test_genesys_api import accepted, api, bayeux, desk, http, operate, receive  # noqa: F401

SALES = 'sales@helpdesk.example'
ISERVICE = '/webapp-api-mq-myqueue'


def add_sales_agent_in_tier2(run_postdesk) -> str:
    added = run_postdesk('agent', 'add', 'sam', '--mailbox', SALES, '--queue', SALES, '--agent-group', 'Tier2',
                         '--json', check=True)
    return json.loads(added.stdout)['Token']


def deep(levels: int) -> str:
    return '[' * levels + ']' * levels


def test_a_shared_workbin_shows_an_agent_only_its_mailboxes_work(api, desk, run_postdesk, tmp_path, conn):
    sam_token = add_sales_agent_in_tier2(run_postdesk)
    receive(run_postdesk, tmp_path)
    with http(api, desk['ann']) as ann, http(api, sam_token) as sam:
        interaction_id = accepted(ann)
        assert operate(ann, interaction_id, 'PlaceInWorkbin', workbin='Escalations').status_code == 200
        workbins = sam.get('/api/v2/me/workbins').json()
        bob_sees = http(api, desk['bob']).get('/api/v2/me/workbins').json()
    assert [i for w in workbins['workbins'] for i in w['interactions']] == []
    assert [i['id'] for w in bob_sees['workbins'] for i in w['interactions']] == [interaction_id]
    sam_id = conn.execute("SELECT agent_id FROM agent WHERE login = 'sam'").fetchone()[0]
    assert conn.execute('SELECT count(*) FROM event WHERE agent_id = %s', (sam_id,)).fetchone()[0] == 0


def test_work_goes_to_no_queue_and_no_agent_outside_its_mailbox(api, desk, run_postdesk, tmp_path, conn):
    sam_token = add_sales_agent_in_tier2(run_postdesk)
    receive(run_postdesk, tmp_path)
    with http(api, desk['ann']) as ann, http(api, sam_token) as sam:
        interaction_id = accepted(ann)
        moved = operate(ann, interaction_id, 'PlaceInQueue', queueName=SALES)
        sam.post('/api/v2/me/channels/email', json={'operationName': 'Ready'})
        conn.execute("UPDATE interaction SET state = 'Queued', owner_id = NULL, queue_id = "
                     "(SELECT queue_id FROM queue WHERE name = %s) WHERE interaction_id = %s",
                     (SALES, int(interaction_id)))            # as if it got there by another way
        conn.execute("SELECT pg_notify('postdesk_work', '')")
        time.sleep(3)
        mine = sam.get('/api/v2/me/interactions', params={'fields': '*'}).json()['interactions']
    assert moved.status_code == 409, moved.text
    assert mine == []
    assert conn.execute('SELECT invited_id FROM interaction WHERE interaction_id = %s',
                        (int(interaction_id),)).fetchone()[0] is None


def test_values_nested_without_end_are_400_and_nothing_is_stored(api, desk, run_postdesk, tmp_path):
    receive(run_postdesk, tmp_path)
    with http(api, desk['ann']) as ann:
        interaction_id = accepted(ann)
        nested = ann.post('/api/v2/me/interactions/%s' % interaction_id, headers={'Content-Type': 'application/json'},
                          content='{"operationName": "UpdateUserData", "userData": {"a": %s}}' % deep(500))
        very = ann.post('/api/v2/me/interactions/%s' % interaction_id, headers={'Content-Type': 'application/json'},
                        content='{"operationName": "UpdateUserData", "userData": {"a": %s}}' % deep(5000))
        saved = ann.post('/api/v1/Agents/Ticket/SaveTicketEntity', headers={'Content-Type': 'application/json'},
                         content='{"TicketId": 1, "CustomFields": {"a": %s}}' % deep(500))
        cometd = ann.post('/api/v2/notifications', headers={'Content-Type': 'application/json'}, content=deep(5000))
        shown = ann.get('/api/v2/interactions/%s' % interaction_id)
        ticket = ann.get('/api/v1/Ticket/1')
    assert [r.status_code for r in (nested, very, saved, cometd)] == [400] * 4
    assert shown.status_code == ticket.status_code == 200


def test_what_no_client_should_send_is_400_never_500(api, desk, run_postdesk, tmp_path):
    receive(run_postdesk, tmp_path)
    with http(api, desk['ann']) as ann:
        interaction_id = accepted(ann)
        answers = {
            'DeleteUserData of lists': operate(ann, interaction_id, 'DeleteUserData', userData=[[1]]),
            'NaN in Bayeux': ann.post('/api/v2/notifications', headers={'Content-Type': 'application/json'},
                                      content='{"channel": "/meta/handshake", "id": NaN}'),
            'threadProperties values a number': ann.post(ISERVICE, params={'api': 'sendleaveopen'}, json={
                'interactionIDs': [interaction_id], 'answer': {
                    'bodyHtml': '<p>x</p>', 'threadProperties': [{'propertyID': '1', 'values': 5}]}}),
            'an id that is a boolean': ann.post(ISERVICE, params={'api': 'sendleaveopen'}, json={
                'interactionIDs': [True], 'answer': {'bodyHtml': '<p>x</p>'}}),
            'Person.Email a number': ann.post('/api/v1/Agents/Ticket/SaveTicketEntity', json={
                'TicketId': 0, 'Title': 't', 'Person': {'Email': 5}}),
            'a tag without a name': ann.post('/api/v1/Agents/Ticket/SaveTicketEntity', json={
                'TicketId': 1, 'Tags': [{'Name': 5}]}),
            'transfer to oneself': operate(ann, interaction_id, 'Transfer', userId='ann'),
        }
        [shake] = bayeux(ann, {'channel': '/meta/handshake', 'supportedConnectionTypes': 5})
        kept = ann.post('/api/v1/Agents/Ticket/SaveTicketEntity', json={
            'TicketId': 1, 'CustomFields': {'threadProperties': [{'values': 7}]}})
        replied = ann.post(ISERVICE, params={'api': 'sendleaveopen'}, json={
            'interactionIDs': [interaction_id], 'answer': {'bodyHtml': '<p>x</p>'}})
    assert {name: r.status_code for name, r in answers.items()} == {name: 400 for name in answers}
    assert shake['successful'] is False
    assert kept.status_code == 200 and replied.status_code == 200, replied.text


def test_a_bayeux_batch_is_bounded_and_a_strange_client_id_is_unknown(api, desk):
    with http(api, desk['ann']) as ann:
        [shake] = bayeux(ann, {'channel': '/meta/handshake', 'supportedConnectionTypes': ['long-polling']})
        two_connects = ann.post('/api/v2/notifications', json=[
            {'channel': '/meta/connect', 'clientId': shake['clientId'], 'connectionType': 'long-polling'}] * 2)
        many = ann.post('/api/v2/notifications', json=[{'channel': '/meta/handshake'}] * 101)
        subscribed, strange = bayeux(ann, {'channel': '/meta/subscribe', 'clientId': shake['clientId'],
                                           'subscription': '/v2/me/*'},
                                     {'channel': '/meta/connect', 'clientId': 'a\u0000b',
                                      'connectionType': 'long-polling'})
    assert two_connects.status_code == many.status_code == 400
    assert subscribed['successful'] and (strange['successful'], strange['error'][:3]) == (False, '402')


def test_connects_of_one_client_at_once_get_each_event_once(api, desk, run_postdesk, tmp_path):
    receive(run_postdesk, tmp_path)
    with http(api, desk['ann']) as ann:
        interaction_id = accepted(ann)
        [shake] = bayeux(ann, {'channel': '/meta/handshake', 'supportedConnectionTypes': ['long-polling']})
        client_id = shake['clientId']
        bayeux(ann, {'channel': '/meta/subscribe', 'clientId': client_id, 'subscription': '/v2/me/*'})
        bayeux(ann, {'channel': '/meta/connect', 'clientId': client_id, 'connectionType': 'long-polling'})
        delivered = []

        def connect(_):
            with http(api, desk['ann']) as client:
                return bayeux(client, {'channel': '/meta/connect', 'clientId': client_id,
                                       'connectionType': 'long-polling'})
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            for round_ in range(4):
                waiting = [pool.submit(connect, n) for n in range(6)]
                time.sleep(0.5)
                operate(ann, interaction_id, 'AttachUserData', userData={'round': round_})
                delivered += [m['id'] for f in waiting for m in f.result() if m['channel'] != '/meta/connect']
    assert len(delivered) == len(set(delivered)) >= 4


def test_a_draft_is_sent_once_and_only_by_its_writer(api, desk, run_postdesk, tmp_path, conn):
    receive(run_postdesk, tmp_path)
    with http(api, desk['ann']) as ann, http(api, desk['bob']) as bob:
        interaction_id = accepted(ann)
        draft_id = operate(ann, interaction_id, 'Reply').json()['id']
        request = {'interactionIDs': [draft_id], 'answer': {'bodyHtml': '<p>On its way.</p>'}}
        by_bob = bob.post(ISERVICE, params={'api': 'sendleaveopen'}, json=request)
        first = ann.post(ISERVICE, params={'api': 'sendleaveopen'}, json=request)
        again = ann.post(ISERVICE, params={'api': 'sendleaveopen'}, json=request)
    assert (by_bob.status_code, first.status_code, again.status_code) == (400, 200, 400)
    assert conn.execute('SELECT count(*) FROM outbox').fetchone()[0] == 1


def test_operations_right_after_postgresql_closed_every_connection(api, desk, conn):
    with http(api, desk['ann']) as ann:
        assert ann.get('/api/v2/me/workbins').status_code == 200
        for _ in range(3):     # each backend gone (the 5 s wait) before the next request, as after a restart
            conn.execute('SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity '
                         'WHERE datname = current_database() AND pid <> pg_backend_pid()')
            started = time.monotonic()
            answers = [ann.get('/api/v2/me/workbins').status_code for _ in range(10)]
            assert answers == [200] * 10 and time.monotonic() - started < 3


def test_without_credentials_a_body_of_the_wrong_type_is_401(api):
    with httpx.Client(base_url='http://127.0.0.1:%d' % api.http_port, timeout=30) as anonymous:
        answers = [anonymous.post(path, content=b'x', headers={'Content-Type': 'text/plain'})
                   for path in ('/api/v1/Agents/Ticket/SaveTicketEntity', '/api/v2/me/interactions/1')]
    assert [a.status_code for a in answers] == [401, 401]
