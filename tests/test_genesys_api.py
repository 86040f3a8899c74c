"""Genesys interactions, workbins and CometD notifications on real `postdesk serve` processes (seeds 001, 004):
agents get ready, are offered mail, accept, hand on and complete it over HTTP; a CometD client written by others
(aiocometd-ng) receives the notifications, also of changes made through another process on the same database."""
from __future__ import annotations

import asyncio
import json
import pathlib
import shutil
import subprocess
import time

import httpx
import pytest

from mails import MAILBOX, make_message
from test_serve import Server

aiocometd = pytest.importorskip('aiocometd_ng', reason='the CometD client aiocometd-ng is in the test extra')

ENV = {'POSTDESK_INVITATION_TIMEOUT': '30', 'POSTDESK_LONG_POLL': '3'}


@pytest.fixture
def desk(run_postdesk) -> dict[str, str]:
    """A mailbox, a second one, agents of the first (in its queue and in groups Tier2 / Floor1), one of the second,
    group workbins, and their tokens."""
    for args in (('mailbox', 'add', MAILBOX, '--default'), ('mailbox', 'add', 'sales@helpdesk.example'),
                 ('queue', 'add', 'Billing'), ('workbin', 'add', 'Escalations', '--agent-group', 'Tier2'),
                 ('workbin', 'add', 'Counter', '--place-group', 'Floor1')):
        run_postdesk(*args, check=True)
    tokens = {}
    for login in ('ann', 'bob'):
        added = run_postdesk('agent', 'add', login, '--mailbox', MAILBOX, '--queue', MAILBOX, '--agent-group', 'Tier2',
                             '--place-group', 'Floor1', '--json', check=True)
        tokens[login] = json.loads(added.stdout)['Token']
    added = run_postdesk('agent', 'add', 'eve', '--mailbox', 'sales@helpdesk.example', '--json', check=True)
    tokens['eve'] = json.loads(added.stdout)['Token']
    return tokens


@pytest.fixture
def api(db_url, tmp_path, desk):
    running = Server(db_url, tmp_path, ENV)
    yield running
    running.stop()


def http(server: Server, token: str) -> httpx.Client:
    return httpx.Client(base_url='http://127.0.0.1:%d' % server.http_port, timeout=30,
                        headers={'Authorization': 'Bearer %s' % token})


def receive(run_postdesk, tmp_path, count: int = 1, prefix: str = 'q') -> None:
    for n in range(count):
        path = tmp_path / ('%s%d.eml' % (prefix, n))
        path.write_bytes(make_message(message_id='<%s%d@customer.example>' % (prefix, n), subject='Question %d' % n))
    assert run_postdesk('replay', *[str(tmp_path / ('%s%d.eml' % (prefix, n))) for n in range(count)]).returncode == 0


def operate(client: httpx.Client, interaction_id: str, operation: str, **fields) -> httpx.Response:
    return client.post('/api/v2/me/interactions/%s' % interaction_id, json={'operationName': operation, **fields})


def offered(client: httpx.Client, count: int = 1, seconds: float = 20) -> list[dict]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = [i for i in client.get('/api/v2/me/interactions', params={'fields': '*'}).json()['interactions']
                 if i['state'] == 'Invited']
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise AssertionError('nothing was offered within %s s' % seconds)


def accepted(client: httpx.Client) -> str:
    client.post('/api/v2/me/channels/email', json={'operationName': 'Ready'})
    [invitation] = offered(client)
    assert operate(client, invitation['id'], 'Accept').json() == {'status': 'ok'}
    client.post('/api/v2/me/channels/email', json={'operationName': 'NotReady'})
    return invitation['id']


# ------------------------------------------------------------------------------------------------ the day

def test_a_ready_agent_is_offered_mail_accepts_and_completes_it(api, desk, run_postdesk, tmp_path):
    receive(run_postdesk, tmp_path)
    with http(api, desk['ann']) as ann:
        assert ann.post('/api/v2/me/channels/email', json={'operationName': 'Ready'}).json() == {'statusCode': 0}
        [invitation] = offered(ann)
        assert invitation['capabilities'] == ['Accept', 'Reject'] and invitation['mediaType'] == 'email'
        assert operate(ann, invitation['id'], 'Accept').json() == {'status': 'ok'}
        one = ann.get('/api/v2/interactions/%s' % invitation['id']).json()
        assert one['statusCode'] == 0 and one['interaction']['state'] == 'Accepted'
        assert 'Complete' in one['interaction']['capabilities']
        uris = ann.get('/api/v2/me/interactions').json()
        assert uris == {'statusCode': 0, 'uris': ['http://127.0.0.1:%d/api/v2/interactions/%s' % (
            api.http_port, invitation['id'])]}
        assert operate(ann, invitation['id'], 'Complete').json() == {'statusCode': 0}
        assert ann.get('/api/v2/me/interactions').json() == {'statusCode': 0, 'uris': []}


@pytest.mark.parametrize('operation, fields, keys', [
    ('Accept', {}, {'status', 'errorDescription'}),
    ('Reject', {}, {'status', 'errorDescription'}),
    ('PlaceInQueue', {'queueName': 'Billing'}, {'status', 'errorDescription'}),
    ('UpdateUserData', {'userData': {'a': 1}}, {'status', 'errorDescription'}),
    ('AttachUserData', {'userData': {'a': 1}}, {'status', 'errorDescription'}),
    ('DeleteUserData', {'userData': {'a': 1}}, {'status', 'errorDescription'}),
    ('PlaceInWorkbin', {'workbin': 'Escalations'}, {'status', 'errorDescription'}),
    ('Cancel', {}, {'statusCode', 'statusMessage'}),
    ('Complete', {}, {'statusCode', 'statusMessage'}),
    ('Transfer', {'userId': 'ann'}, {'statusCode', 'statusMessage'}),
])
def test_an_operation_the_state_does_not_allow_answers_the_seeds_failure_body(api, desk, run_postdesk, tmp_path,
                                                                              operation, fields, keys):
    """Bob operates on Ann's accepted interaction (or Accept/Reject one that is not offered to him): nothing
    changes, and the body is the seed's failure body for that operation, key for key."""
    receive(run_postdesk, tmp_path)
    with http(api, desk['ann']) as ann, http(api, desk['bob']) as bob:
        interaction_id = accepted(ann)
        answer = operate(bob, interaction_id, operation, **fields)
        assert answer.status_code == 409, answer.text
        body = answer.json()
        assert set(body) == keys
        assert body.get('status') == 'error' or body['statusCode'] > 0
        assert ann.get('/api/v2/interactions/%s' % interaction_id).json()['interaction']['state'] == 'Accepted'


def test_an_interaction_of_another_mailbox_is_not_found_like_one_that_does_not_exist(api, desk, run_postdesk,
                                                                                    tmp_path):
    receive(run_postdesk, tmp_path)
    with http(api, desk['ann']) as ann, http(api, desk['eve']) as eve:
        interaction_id = accepted(ann)
        theirs = operate(eve, interaction_id, 'Complete')
        missing = operate(eve, '999999', 'Complete')
        assert theirs.status_code == missing.status_code == 404
        assert theirs.json()['statusMessage'].replace(interaction_id, 'N') == \
            missing.json()['statusMessage'].replace('999999', 'N')
        assert eve.get('/api/v2/interactions/%s' % interaction_id).status_code == 404


def test_successes_answer_the_seeds_bodies(api, desk, run_postdesk, tmp_path):
    receive(run_postdesk, tmp_path)
    with http(api, desk['ann']) as ann, http(api, desk['bob']) as bob:
        interaction_id = accepted(ann)
        for operation, fields in (('UpdateUserData', {'userData': {'field1': 'v', 'field3': {'fieldA': 1}}}),
                                  ('AttachUserData', {'userData': {'field2': 2}}),
                                  ('DeleteUserData', {'userData': {'field2': None}}),
                                  ('GetWorkbinContent', {'workbin': 'InProgress'})):
            assert operate(ann, interaction_id, operation, **fields).json() == {'status': 'ok'}
        data = ann.get('/api/v2/interactions/%s' % interaction_id).json()['interaction']['userData']
        assert data == {'field1': 'v', 'field3': {'fieldA': 1}}
        assert operate(ann, interaction_id, 'Transfer', userId='bob').json() == {'statusCode': 0}
        assert bob.get('/api/v2/interactions/%s' % interaction_id).json()['interaction']['capabilities'][0] == \
            'Complete'
        started = operate(bob, interaction_id, 'Reply')
        assert started.json()['statusCode'] == 0
        assert operate(bob, started.json()['id'], 'Cancel').json() == {'status': 0}
        assert operate(bob, interaction_id, 'PlaceInQueue', queueName='Billing').json() == {'status': 'ok'}


def test_a_draft_reply_is_sent_by_sendleaveopen(api, desk, run_postdesk, tmp_path, conn):
    receive(run_postdesk, tmp_path)
    with http(api, desk['ann']) as ann:
        interaction_id = accepted(ann)
        draft_id = operate(ann, interaction_id, 'ReplyAll').json()['id']
        draft = ann.get('/api/v2/interactions/%s' % draft_id).json()['interaction']
        assert draft['state'] == 'Draft' and draft['subject'].startswith('Re: [ref#: ')
        assert ann.put('/api/v2/interactions/%s' % draft_id, json={'subject': 'Your order 1001'}).json() == \
            {'statusCode': 0}
        sent = ann.post('/webapp-api-mq-myqueue', params={'api': 'sendleaveopen'}, json={
            'interactionIDs': [draft_id], 'answer': {'bodyHtml': '<p>It ships today.</p>'}})
        assert sent.status_code == 200, sent.text
        assert sent.json()['response']['row']['id'] == draft_id
        assert sent.json()['response']['row']['subject'].endswith('Your order 1001')
    row = conn.execute('SELECT state, status, body_html FROM interaction WHERE interaction_id = %s',
                       (int(draft_id),)).fetchone()
    assert row[:2] == ('Completed', 'Unsent') and 'It ships today.' in row[2] and 'wrote:' in row[2]
    assert conn.execute('SELECT count(*) FROM outbox WHERE interaction_id = %s', (int(draft_id),)).fetchone()[0] == 1


def test_workbins_list_their_content(api, desk, run_postdesk, tmp_path):
    receive(run_postdesk, tmp_path)
    with http(api, desk['ann']) as ann:
        interaction_id = accepted(ann)
        assert operate(ann, interaction_id, 'PlaceInWorkbin', workbin='Escalations').json() == {'status': 'ok'}
        workbins = ann.get('/api/v2/me/workbins').json()
        assert workbins['statusCode'] == 0
        names = {w['name']: w for w in workbins['workbins']}
        assert set(names) == {'Drafts', 'InProgress', 'Escalations', 'Counter'}
        escalations = ann.get('/api/v2/me/workbins/%s' % names['Escalations']['id']).json()['workbin']
        assert [i['id'] for i in escalations['interactions']] == [interaction_id]
        assert escalations['agentGroup'] == 'Tier2'


# ------------------------------------------------------------------------------------------- notifications

class Bearer(aiocometd.extensions.AuthExtension):
    """The CometD client sends the agent's token on every request, as the API wants it."""

    def __init__(self, token: str):
        self.token = token

    async def outgoing(self, payload, headers):
        headers['Authorization'] = 'Bearer %s' % self.token

    async def incoming(self, payload, headers=None):
        return None

    async def authenticate(self):
        return None


async def collect(server: Server, token: str, channels: tuple[str, ...], act, count: int, seconds: float = 30):
    """Subscribe through `server`, run `act()` (blocking, in a thread), and return the first `count` messages."""
    url = 'http://127.0.0.1:%d/api/v2/notifications' % server.http_port
    found = []
    async with aiocometd.Client(url, aiocometd.ConnectionType.LONG_POLLING, auth=Bearer(token)) as client:
        for channel in channels:
            await client.subscribe(channel)
        await asyncio.to_thread(act)

        async def read():
            async for message in client:
                found.append(message)
                if len(found) >= count:
                    return
        await asyncio.wait_for(read(), seconds)
    return found


@pytest.mark.parametrize('kind, group, workbin', [('agentGroup', 'Tier2', 'Escalations'),
                                                  ('placeGroup', 'Floor1', 'Counter')])
def test_pull_from_a_group_workbin_answers_the_seeds_response_and_its_item_removed(api, desk, run_postdesk, tmp_path,
                                                                                  kind, group, workbin):
    receive(run_postdesk, tmp_path)
    with http(api, desk['ann']) as ann, http(api, desk['bob']) as bob:
        interaction_id = accepted(ann)
        operate(ann, interaction_id, 'PlaceInWorkbin', workbin=workbin)
        workbin_id = [w['id'] for w in bob.get('/api/v2/me/workbins').json()['workbins'] if w['name'] == workbin][0]
        answers = []

        def pull():
            answers.append(bob.post('/api/v2/me/workbins/%s' % workbin_id, params={kind: group},
                                    json={'operationName': 'PullEmail', 'id': interaction_id}))
        [message] = asyncio.run(collect(api, desk['ann'], ('/v2/me/workbins',), pull, 1))
        again = bob.post('/api/v2/me/workbins/%s' % workbin_id, params={kind: group},
                         json={'operationName': 'PullEmail', 'id': interaction_id})
    assert answers[0].status_code == 200
    assert set(answers[0].json()) == {'statusCode', 'referenceId'} and answers[0].json()['statusCode'] == 0
    data = message['data']
    assert (data['action'], data[kind], data['messageType'], data['id']) == ('ItemRemoved', group,
                                                                             'WorkbinStateChangeMessage', workbin_id)
    assert again.status_code == 409 and again.json()['statusCode'] > 0


def test_a_client_of_one_process_gets_changes_made_through_another_in_order_once(db_url, tmp_path, desk,
                                                                                run_postdesk):
    first, second = Server(db_url, tmp_path, ENV), Server(db_url, tmp_path, ENV)
    try:
        receive(run_postdesk, tmp_path)
        with http(first, desk['ann']) as ann:
            def work_through_the_first():
                interaction_id = accepted(ann)
                for n in range(5):
                    operate(ann, interaction_id, 'UpdateUserData', userData={'step': n})
                operate(ann, interaction_id, 'Complete')
            messages = asyncio.run(collect(second, desk['ann'], ('/v2/me/interactions',), work_through_the_first, 8))
    finally:
        first.stop()
        second.stop()
    kinds = [(m['data']['notificationType'], m['data']['interaction']['state'],
              m['data']['interaction']['userData'].get('step')) for m in messages]
    assert kinds == [('NewInteraction', 'Invited', None), ('StatusChange', 'Accepted', None)] + \
        [('PropertiesUpdated', 'Accepted', n) for n in range(5)] + [('StatusChange', 'Completed', 4)]
    ids = [int(m['id']) for m in messages]
    assert ids == sorted(set(ids))


# --------------------------------------------------------------------------- many agents on two processes

def agent_day(server_of, token: str, stop, rng, reject_share: float = 0.2) -> None:
    """One agent's client: ready, it accepts (or sometimes rejects) what it is offered and completes what it
    owns, until `stop` is set; `server_of()` is the process it talks to now (it may move to another)."""
    client = None
    port = None
    while not stop.is_set():
        server = server_of()
        if server.http_port != port:
            port = server.http_port
            client = http(server, token)
        try:
            client.post('/api/v2/me/channels/email', json={'operationName': 'Ready'})
            mine = client.get('/api/v2/me/interactions', params={'fields': '*'}).json()['interactions']
            for item in mine:
                if item['state'] == 'Invited':
                    operate(client, item['id'], 'Reject' if rng.random() < reject_share else 'Accept')
                elif item['state'] == 'Accepted':
                    operate(client, item['id'], 'Complete')
        except (httpx.HTTPError, ValueError):
            time.sleep(0.2)                 # its process went away: the client tries again
        time.sleep(0.05)


def test_two_processes_six_agents_complete_two_hundred_interactions_each_once(db_url, tmp_path, run_postdesk,
                                                                               conn):
    import random
    import signal
    import threading
    run_postdesk('mailbox', 'add', MAILBOX, '--default', check=True)
    tokens = [json.loads(run_postdesk('agent', 'add', 'agent%d' % n, '--mailbox', MAILBOX, '--queue', MAILBOX,
                                      '--json', check=True).stdout)['Token'] for n in range(6)]
    receive(run_postdesk, tmp_path, 200)
    env = dict(ENV, POSTDESK_INVITATION_TIMEOUT='3')
    servers = [Server(db_url, tmp_path, env), Server(db_url, tmp_path, env)]
    homes = [servers[0]] * 3 + [servers[1]] * 3
    stop = threading.Event()
    threads = [threading.Thread(target=agent_day, args=(lambda n=n: homes[n], tokens[n], stop, random.Random(n)))
               for n in range(6)]
    for thread in threads:
        thread.start()
    try:
        completed = lambda: conn.execute("SELECT count(*) FROM interaction WHERE state = 'Completed'").fetchone()[0]
        deadline = time.monotonic() + 240
        while completed() < 60 and time.monotonic() < deadline:
            time.sleep(0.2)
        servers[0].process.send_signal(signal.SIGKILL)     # its agents' clients move to the other process
        servers[0].process.wait(10)
        time.sleep(1)
        homes[:3] = [servers[1]] * 3
        while completed() < 200 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        for server in servers:
            server.stop()
    assert completed() == 200
    audit = conn.execute("SELECT interaction_id, action, status_before, status_after, modifier, assigned_to "
                         "FROM status_audit WHERE target = 'work' ORDER BY audit_id").fetchall()
    by_interaction: dict[int, list] = {}
    for row in audit:
        by_interaction.setdefault(row[0], []).append(row[1:])
    assert len(by_interaction) == 200
    for entries in by_interaction.values():
        assert [e[0] for e in entries].count('Completed') == 1
        holder = None
        for action, before, after, modifier, assigned in entries:
            if action == 'Accepted':
                assert before == 'Invited' and holder is None, entries    # never owned by two at once
                holder = modifier
            elif action == 'Completed':
                assert modifier == holder, entries
                holder = None
    rejections = [(entries, i) for entries in by_interaction.values() for i, e in enumerate(entries)
                  if e[0] == 'Rejected']
    assert rejections, 'some offers were rejected'
    offered_elsewhere = sum(1 for entries, i in rejections
                            if any(e[0] == 'Offered to an agent' and e[4] != entries[i][3] for e in entries[i + 1:]))
    assert offered_elsewhere >= len(rejections) * 0.8


NODE_CLIENT = pathlib.Path(__file__).parent / 'node'


@pytest.mark.skipif(not shutil.which('node') or not (NODE_CLIENT / 'node_modules' / 'cometd').is_dir(),
                    reason='Node.js with the cometd npm packages is needed (.ci/run installs them in tests/node)')
def test_the_cometd_javascript_client_receives_changes_made_through_another_process(db_url, tmp_path, desk,
                                                                                   run_postdesk):
    first, second = Server(db_url, tmp_path, ENV), Server(db_url, tmp_path, ENV)
    client = subprocess.Popen(['node', str(NODE_CLIENT / 'cometd_client.js'),
                               'http://127.0.0.1:%d/api/v2/notifications' % second.http_port, desk['ann'], '3', '60',
                               '/v2/me/interactions'], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert client.stdout.readline().strip() == 'ready'
        receive(run_postdesk, tmp_path)
        with http(first, desk['ann']) as ann:
            interaction_id = accepted(ann)
            operate(ann, interaction_id, 'Complete')
        lines = [json.loads(client.stdout.readline()) for _ in range(3)]
        assert client.wait(30) == 0
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
        first.stop()
        second.stop()
    assert [(m['data']['notificationType'], m['data']['interaction']['state']) for m in lines] == [
        ('NewInteraction', 'Invited'), ('StatusChange', 'Accepted'), ('StatusChange', 'Completed')]


# ----------------------------------------------------------------------------------------- the protocol

def bayeux(client: httpx.Client, *messages: dict) -> list[dict]:
    answer = client.post('/api/v2/notifications', json=list(messages))
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_client_that_comes_back_within_its_session_gets_what_it_missed_in_order(api, desk, run_postdesk,
                                                                                  tmp_path):
    with http(api, desk['ann']) as cometd, http(api, desk['ann']) as ann:
        [shake] = bayeux(cometd, {'channel': '/meta/handshake', 'version': '1.0',
                                  'supportedConnectionTypes': ['long-polling'], 'id': '1'})
        client_id = shake['clientId']
        assert shake['successful'] and shake['advice']['reconnect'] == 'retry'
        [subscribed] = bayeux(cometd, {'channel': '/meta/subscribe', 'clientId': client_id,
                                       'subscription': '/v2/me/*', 'id': '2'})
        assert subscribed['successful']
        bayeux(cometd, {'channel': '/meta/connect', 'clientId': client_id, 'connectionType': 'long-polling'})
        receive(run_postdesk, tmp_path)                        # meanwhile the client is away
        interaction_id = accepted(ann)
        operate(ann, interaction_id, 'Complete')
        answers = bayeux(cometd, {'channel': '/meta/connect', 'clientId': client_id,
                                  'connectionType': 'long-polling', 'id': '3'})
        again = bayeux(cometd, {'channel': '/meta/connect', 'clientId': client_id, 'connectionType': 'long-polling',
                                'id': '4'})
    delivered = [a for a in answers if a['channel'] == '/v2/me/interactions']
    assert [(m['data']['notificationType'], m['data']['interaction']['state']) for m in delivered] == [
        ('NewInteraction', 'Invited'), ('StatusChange', 'Accepted'), ('StatusChange', 'Completed')]
    assert answers[-1]['channel'] == '/meta/connect' and answers[-1]['successful']
    assert not [a for a in again if a['channel'] == '/v2/me/interactions']     # given once


def test_an_unknown_client_is_told_to_handshake_and_an_unknown_channel_is_refused(api, desk):
    with http(api, desk['ann']) as cometd:
        [unknown] = bayeux(cometd, {'channel': '/meta/connect', 'clientId': 'nope', 'connectionType': 'long-polling',
                                    'id': '1'})
        assert (unknown['successful'], unknown['error'][:3], unknown['advice']['reconnect']) == (False, '402',
                                                                                                 'handshake')
        [shake] = bayeux(cometd, {'channel': '/meta/handshake', 'version': '1.0',
                                  'supportedConnectionTypes': ['long-polling']})
        [refused] = bayeux(cometd, {'channel': '/meta/subscribe', 'clientId': shake['clientId'],
                                    'subscription': '/v2/everyone/secrets'})
        assert refused['successful'] is False and refused['error'].startswith('403')
        [published] = bayeux(cometd, {'channel': '/v2/me/interactions', 'clientId': shake['clientId'], 'data': {}})
        assert published['successful'] is False
        assert bayeux(cometd, {'channel': '/meta/disconnect', 'clientId': shake['clientId']})[0]['successful']
        [gone] = bayeux(cometd, {'channel': '/meta/connect', 'clientId': shake['clientId'],
                                 'connectionType': 'long-polling'})
        assert gone['successful'] is False
    with httpx.Client(base_url='http://127.0.0.1:%d' % api.http_port) as anonymous:
        assert anonymous.post('/api/v2/notifications', json=[{'channel': '/meta/handshake'}]).status_code == 401
