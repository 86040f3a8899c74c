"""The HTTP API of `postdesk serve --http`, on a real server process and a real PostgreSQL, through an HTTP client:
SuperOffice's tickets and mail (seeds 002, 003), iService's replies (seed 000), authentication, errors, metrics."""
from __future__ import annotations

import base64
import concurrent.futures
import datetime
import json
import pathlib
import re
import signal
import threading

import httpx
import psycopg
import pytest

from mails import MAILBOX, make_message
from test_serve import Server, _set_database_available, wait_for
from ticketing.operations.agents import NewAgent, add_agent, disable_agent, server_key, set_password

DATA = pathlib.Path(__file__).parent / 'data'
SALES = 'sales@helpdesk.example'
TICKET_INFO_KEYS = ['TicketId', 'Title', 'OwnerName', 'CategoryName', 'PriorityName', 'TicketUrl', 'PersonName',
                    'ContactName', 'TableRight', 'FieldProperties', 'InteractionId', 'Outcome', 'ThreadRule']
MAIL_PATH = '/api/v1/Agents/CustomerService/CreateTicketFromMailData'
SAVE_PATH = '/api/v1/Agents/Ticket/SaveTicketEntity'


@pytest.fixture
def mailboxes(conn):
    conn.execute("INSERT INTO mailbox (address, name, is_default) VALUES (%s, 'Support', true)", (MAILBOX,))
    conn.execute("INSERT INTO mailbox (address, name) VALUES (%s, 'Sales')", (SALES,))


def new_agent(conn, login: str, *mailboxes: str, role: str = 'agent') -> str:
    _, token = add_agent(conn, NewAgent(login, login.title(), '%s@helpdesk.example' % login, role, mailboxes),
                         server_key(conn))
    return token


@pytest.fixture
def tokens(conn, mailboxes) -> dict[str, str]:
    return {'anna': new_agent(conn, 'anna', MAILBOX), 'sven': new_agent(conn, 'sven', SALES),
            'root': new_agent(conn, 'root', role='admin')}


@pytest.fixture
def api(db_url, tmp_path, tokens):
    running = Server(db_url, tmp_path, {'POSTDESK_HTTP_MAX_BODY': '300000'})
    yield running
    running.stop()


def client(server: Server, token: str | None = None, **headers) -> httpx.Client:
    if token:
        headers['Authorization'] = 'Bearer %s' % token
    return httpx.Client(base_url='http://127.0.0.1:%d' % server.http_port, headers=headers, timeout=30)


def post_mail(http: httpx.Client, data: bytes | str, mailbox_id: int = 1, **params) -> httpx.Response:
    text = data.decode() if isinstance(data, bytes) else data
    return http.post(MAIL_PATH, json={'MailboxId': mailbox_id, 'Data': text}, params=params)


def new_ticket(http: httpx.Client, **message) -> dict:
    answer = post_mail(http, make_message(**message))
    assert answer.status_code == 200, answer.text
    return answer.json()


# ------------------------------------------------------------------------------------------ the server

def test_healthz_answers_ok_without_credentials_and_openapi_is_published(api):
    with client(api) as http:
        assert (http.get('/healthz').status_code, http.get('/healthz').json()) == (200, {'status': 'ok'})
        document = http.get('/openapi.json').json()
    for path in (MAIL_PATH, SAVE_PATH, '/api/v1/Ticket/{ticket_id}', '/api/v1/Ticket',
                 '/api/v1/TicketMessage/{message_id}', '/api/v1/TicketMessage/{message_id}/Attachment/{number}',
                 '/api/v1/TicketMessage/{message_id}/Raw', '/webapp-api-mq-myqueue', '/metrics', '/healthz'):
        assert path in document['paths']


def test_head_is_answered_wherever_get_is_with_the_headers_only(api, tokens):
    with client(api, tokens['anna']) as http:
        ticket_id = new_ticket(http)['TicketId']
        got = http.get('/api/v1/Ticket/%d' % ticket_id)
        head = http.head('/api/v1/Ticket/%d' % ticket_id)
        health = http.head('/healthz')
        not_yours = http.head('/api/v1/Ticket/%d' % (ticket_id + 1000))
        post_only = http.head(MAIL_PATH)
    assert (head.status_code, head.content) == (200, b'')
    assert head.headers['ETag'] == got.headers['ETag']
    assert head.headers['content-length'] == got.headers['content-length']
    assert (health.status_code, health.content) == (200, b'')
    assert not_yours.status_code == 404
    assert post_only.status_code == 405 and post_only.headers['Allow'] == 'POST'


def test_errors_are_json_with_their_status(api, tokens):
    with client(api, tokens['anna']) as http:
        missing = http.get('/api/v1/nothing-here')
        wrong_method = http.delete('/api/v1/Ticket/1')
        malformed = http.post(MAIL_PATH, content=b'{"MailboxId": 1, "Data": ', headers={'Content-Type':
                                                                                         'application/json'})
        not_json = http.post(MAIL_PATH, content=b'MailboxId=1', headers={'Content-Type': 'text/plain'})
        too_large = http.post(MAIL_PATH, json={'MailboxId': 1, 'Data': 'x' * 400000})
        bad_id = http.get('/api/v1/Ticket/notanumber')
        two_routes = http.post('/api/v2/interactions/1', json={})
        slashed = http.get('/api/v1/Ticket/1/', headers={'Host': 'evil.example'})
        escaped = http.get('/api/v1/Ticket%2F', headers={'Host': 'evil.example'})
    assert [r.status_code for r in (missing, wrong_method, malformed, not_json, too_large, bad_id)] == \
        [404, 405, 400, 415, 413, 400]
    for response in (slashed, escaped):       # no redirect to wherever the client's Host header points
        assert response.status_code == 404 and 'location' not in response.headers
        assert response.json()['Status'] == 404
    assert wrong_method.headers['Allow'] == 'GET, HEAD'
    assert two_routes.status_code == 405 and two_routes.headers['Allow'] == 'GET, HEAD, PUT'   # every route of it
    for response in (missing, wrong_method, malformed, not_json, too_large, bad_id):
        assert response.headers['content-type'].startswith('application/json')
        assert response.json()['Status'] == response.status_code and response.json()['Error']


def test_a_message_over_max_message_bytes_gets_413_and_is_not_stored(db_url, tmp_path, tokens, conn):
    running = Server(db_url, tmp_path, {'POSTDESK_MAX_MESSAGE_BYTES': '5000'}, args=('--smtp', 'off', '--lmtp', 'off'))
    try:
        with client(running, tokens['anna']) as http:
            big = post_mail(http, make_message(body='x' * 6000 + '\n'))
            small = post_mail(http, make_message(message_id='<small@customer.example>'))
    finally:
        running.stop()
    assert (big.status_code, small.status_code) == (413, 200)
    assert conn.execute('SELECT count(*) FROM raw_message').fetchone()[0] == 1


def test_text_json_is_json_too(api, tokens):
    with client(api, tokens['anna']) as http:
        answer = http.post(MAIL_PATH, content=json.dumps({'MailboxId': 1, 'Data': make_message().decode()}),
                           headers={'Content-Type': 'text/json; charset=utf-8'})
    assert answer.status_code == 200 and answer.json()['Outcome'] == 'new'


def test_api_only_serve_with_smtp_and_lmtp_off(db_url, tmp_path, tokens):
    running = Server(db_url, tmp_path, args=('--smtp', 'off', '--lmtp', 'off'))
    try:
        assert running.smtp_port is None and running.lmtp_port is None
        with client(running) as http:
            assert http.get('/healthz').json() == {'status': 'ok'}
    finally:
        assert running.stop() == 0


def test_database_unreachable_gives_503_with_retry_after(api, tokens, server_url, db_url):
    _set_database_available(server_url, db_url, False)
    try:
        with client(api, tokens['anna']) as http:
            health = http.get('/healthz')
            ticket = http.get('/api/v1/Ticket/1')
    finally:
        _set_database_available(server_url, db_url, True)
    assert (health.status_code, health.json()) == (503, {'status': 'unavailable'})
    assert ticket.status_code == 503 and ticket.headers['Retry-After']


def test_a_message_handed_in_while_the_database_is_unreachable_gets_503_and_is_stored_once_it_is_back(
        api, tokens, server_url, db_url):
    """The intake workers keep connections of their own: one the server closed is replaced, not a 500."""
    message = make_message(message_id='<while-down@customer.example>')
    with client(api, tokens['anna']) as http:
        assert post_mail(http, make_message()).status_code == 200          # the workers are connected
        _set_database_available(server_url, db_url, False)
        try:
            refused = post_mail(http, message)
        finally:
            _set_database_available(server_url, db_url, True)
        stored = post_mail(http, message)
    assert refused.status_code == 503 and refused.headers['Retry-After'], refused.text
    assert stored.status_code == 200 and stored.json()['Outcome'] == 'new', stored.text
    with psycopg.connect(db_url) as conn:          # the test's own connection was closed with the others
        assert conn.execute("SELECT count(*) FROM interaction WHERE message_id = 'while-down@customer.example'"
                            ).fetchone()[0] == 1


# ------------------------------------------------------------------------------------------ authentication

def test_missing_wrong_and_disabled_credentials_get_401_with_a_challenge(api, tokens, conn):
    disable_agent(conn, 'sven')
    answers = []
    for headers in ({}, {'Authorization': 'Bearer pd_not-a-token'}, {'Authorization': 'Bearer %s' % tokens['sven']},
                    {'Authorization': 'Basic %s' % base64.b64encode(b'anna:wrong').decode()}):
        with client(api, **headers) as http:
            answers.append(http.get('/api/v1/Ticket'))
    assert [a.status_code for a in answers] == [401, 401, 401, 401]
    assert all('Bearer' in a.headers['WWW-Authenticate'] for a in answers)


def test_basic_takes_the_login_with_the_password_or_the_token(api, tokens, conn):
    set_password(conn, 'anna', 's3cret password')
    for secret in ('s3cret password', tokens['anna']):
        with httpx.Client(base_url='http://127.0.0.1:%d' % api.http_port, auth=('anna', secret)) as http:
            assert http.get('/api/v1/Ticket').status_code == 200


def test_a_login_basic_could_not_carry_is_refused_by_agent_add(mailboxes, run_postdesk, conn):
    for login in ('sales:desk', 'anna smith', 'anna\x7f', ''):
        refused = run_postdesk('agent', 'add', login, '--mailbox', MAILBOX)
        assert refused.returncode != 0 and ('cannot hold' in refused.stderr or 'needs a login' in refused.stderr), \
            (login, refused.stderr)
    assert conn.execute("SELECT count(*) FROM agent WHERE login IN ('sales:desk', 'anna smith', 'anna\x7f')"
                        ).fetchone()[0] == 0


def test_a_new_token_replaces_the_old_one(api, tokens, run_postdesk):
    new = run_postdesk('agent', 'token', 'anna', check=True).stdout.strip()
    with client(api, tokens['anna']) as old_client, client(api, new) as new_client:
        assert old_client.get('/api/v1/Ticket').status_code == 401
        assert new_client.get('/api/v1/Ticket').status_code == 200


def test_credentials_used_a_moment_ago_stop_working_at_once_when_replaced_or_disabled(api, tokens, run_postdesk):
    """The API keeps agents it has checked in memory; every change of an agent empties that at once."""
    with client(api, tokens['anna']) as anna, client(api, tokens['sven']) as sven:
        assert anna.get('/api/v1/Ticket').status_code == 200 and sven.get('/api/v1/Ticket').status_code == 200
        run_postdesk('agent', 'token', 'anna', check=True)
        run_postdesk('agent', 'disable', 'sven', check=True)
        assert anna.get('/api/v1/Ticket').status_code == 401
        assert sven.get('/api/v1/Ticket').status_code == 401


def test_another_mailboxs_ticket_is_404_exactly_like_a_missing_one(api, tokens):
    with client(api, tokens['anna']) as anna, client(api, tokens['sven']) as sven:
        ticket_id = new_ticket(anna)['TicketId']
        theirs = sven.get('/api/v1/Ticket/%d' % ticket_id)
        missing = sven.get('/api/v1/Ticket/%d' % (ticket_id + 1000))
        assert sven.get('/api/v1/Ticket').json()['total'] == 0
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()['ErrorType'] == missing.json()['ErrorType']
    assert theirs.content.replace(str(ticket_id).encode(), b'N') == \
        missing.content.replace(str(ticket_id + 1000).encode(), b'N')


def test_repeated_failures_are_slowed_and_then_refused_with_429(api, tokens, conn):
    set_password(conn, 'sven', 'a long passphrase')
    with client(api, 'pd_wrong') as http:
        codes = [http.get('/api/v1/Ticket').status_code for _ in range(10)]
        refused = http.get('/api/v1/Ticket')
    assert codes == [401] * 10
    assert refused.status_code == 429 and int(refused.headers['Retry-After']) > 0
    assert refused.json()['Status'] == 429
    base = 'http://127.0.0.1:%d' % api.http_port
    with httpx.Client(base_url=base, auth=('sven', 'a long passphrase')) as password, \
            httpx.Client(base_url=base, auth=('anna', tokens['anna'])) as basic_token, \
            client(api, tokens['sven']) as bearer:
        # the same address: a password is refused for now, a valid token (never seen before) is not
        assert password.get('/api/v1/Ticket').status_code == 429
        assert basic_token.get('/api/v1/Ticket').status_code == 200
        assert bearer.get('/api/v1/Ticket').status_code == 200
        disable_agent(conn, 'sven')                      # a disabled agent's token is no valid token
        assert bearer.get('/api/v1/Ticket').status_code == 429


# ------------------------------------------------------------------------------------------ SuperOffice

def test_create_ticket_from_mail_data_answers_ticket_info_and_twice_is_a_duplicate(api, tokens, conn):
    message = make_message(message_id='<api-1@customer.example>')
    with client(api, tokens['anna'], **{'Accept-Language': 'en', 'SO-Language': 'en', 'SO-Culture': 'en'}) as http:
        first = post_mail(http, message)
        second = post_mail(http, message)
    assert first.status_code == second.status_code == 200
    info = first.json()
    assert list(info) == TICKET_INFO_KEYS
    assert (info['Outcome'], info['ThreadRule'], info['Title']) == ('new', 'new', 'Order 1001 has not arrived')
    assert info['PersonName'] == 'Anna Schmidt' and info['TicketUrl'].endswith('/%d' % info['TicketId'])
    assert (second.json()['TicketId'], second.json()['Outcome']) == (info['TicketId'], 'duplicate')
    assert conn.execute('SELECT count(*) FROM interaction').fetchone()[0] == 1


def test_create_ticket_from_mail_data_threads_a_reply_as_replay_does(api, tokens):
    with client(api, tokens['anna']) as http:
        first = new_ticket(http, message_id='<q@customer.example>')
        reply = new_ticket(http, message_id='<r@customer.example>', in_reply_to='<q@customer.example>',
                           subject='Re: Order 1001 has not arrived')
    assert (reply['TicketId'], reply['Outcome'], reply['ThreadRule']) == (first['TicketId'], 'followup',
                                                                          'in-reply-to')


def test_concurrent_messages_are_each_answered_for_themselves(api, tokens, conn):
    """Requests that arrive together are stored together; each still gets its own answer: a new ticket, a
    duplicate, a 404 for a mailbox the agent does not work for, a 422 for what cannot be a ticket."""
    import concurrent.futures
    bodies = [(make_message(message_id='<burst-%d@customer.example>' % n, subject='Burst %d' % n), 1)
              for n in range(16)]
    bodies += [(make_message(message_id='<burst-0@customer.example>', subject='Burst 0'), 1),
               (make_message(message_id='<other@customer.example>'), 2), (b'not a message at all', 1)]
    with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
        def send(item):
            with client(api, tokens['anna']) as http:
                return post_mail(http, item[0], mailbox_id=item[1])
        answers = list(pool.map(send, bodies))
    assert [a.status_code for a in answers] == [200] * 17 + [404, 422]
    titles = [a.json()['Title'] for a in answers[:16]]
    assert titles == ['Burst %d' % n for n in range(16)]
    assert len({a.json()['TicketId'] for a in answers[:16]}) == 16
    assert answers[16].json()['TicketId'] == answers[0].json()['TicketId']
    assert conn.execute("SELECT count(*) FROM interaction WHERE message_id LIKE 'burst-%%'").fetchone()[0] == 16


def test_select_nulls_the_fields_not_named(api, tokens):
    with client(api, tokens['anna']) as http:
        selected = post_mail(http, make_message(), **{'$select': 'ticketid,Title,category/id'}).json()
    assert selected['TicketId'] and selected['Title'] == 'Order 1001 has not arrived'
    assert selected['CategoryName'] == ''                  # category/id names the category
    assert all(value is None for key, value in selected.items() if key not in ('TicketId', 'Title', 'CategoryName'))


def test_unknown_mailbox_is_404_and_missing_data_400(api, tokens):
    with client(api, tokens['anna']) as http:
        unknown = post_mail(http, make_message(), mailbox_id=999)
        not_theirs = post_mail(http, make_message(), mailbox_id=2)
        missing = http.post(MAIL_PATH, json={'MailboxId': 1})
    assert (unknown.status_code, not_theirs.status_code, missing.status_code) == (404, 404, 400)


def test_a_message_that_cannot_become_a_ticket_is_quarantined_and_answered_422(api, tokens, conn):
    with client(api, tokens['anna']) as http:
        answer = post_mail(http, 'Notes from the meeting\n\n- nothing here is an e-mail\n')
    assert answer.status_code == 422
    body = answer.json()
    held = conn.execute('SELECT quarantine_id, reason FROM quarantine').fetchall()
    assert body['QuarantineId'] == held[0][0] and body['Reason'] == held[0][1] and body['Outcome'] == 'quarantined'


def test_get_ticket_is_the_ticket_entity_with_its_etag(api, tokens, run_postdesk):
    with client(api, tokens['anna']) as http:
        ticket_id = new_ticket(http)['TicketId']
        answer = http.get('/api/v1/Ticket/%d' % ticket_id)
    entity = answer.json()
    shown = json.loads(run_postdesk('ticket', 'show', str(ticket_id), '--json', check=True).stdout)
    assert entity == shown
    assert entity['Person']['Email'] == 'anna@customer.example' and entity['Person']['FullName'] == 'Anna Schmidt'
    [message] = entity['Messages']
    assert {'TicketMessageId', 'CreatedAt', 'Slevel', 'Important', 'Author', 'NumAttachments'} <= set(message)
    assert re.fullmatch(r'"\d+"', answer.headers['ETag'])


def test_list_is_newest_change_first_with_filters_pages_and_totals(api, tokens):
    with client(api, tokens['root']) as http:
        ids = [new_ticket(http, message_id='<l%d@customer.example>' % i, subject='list %d' % i)['TicketId']
               for i in range(5)]
        middle = http.get('/api/v1/Ticket/%d' % ids[2]).json()['LastChanged']
        post_mail(http, make_message(message_id='<s@customer.example>', subject='sales'), mailbox_id=2)
        page = http.get('/api/v1/Ticket', params={'$top': 2, '$skip': 1, '$filter': 'MailboxId eq 1'}).json()
        since = http.get('/api/v1/Ticket', params={'$filter': 'LastChanged gt %s and MailboxId eq 1' % middle}).json()
        active = http.get('/api/v1/Ticket', params={'$filter': "BaseStatus eq 'Active'"}).json()
        bad = http.get('/api/v1/Ticket', params={'$filter': 'Title eq 1'})
    assert (page['total'], [t['TicketId'] for t in page['items']]) == (5, [ids[3], ids[2]])
    assert [t['TicketId'] for t in since['items']] == [ids[4], ids[3]] and since['total'] == 2
    assert active['total'] == 6 and bad.status_code == 400


def test_a_list_of_100_tickets_costs_a_constant_number_of_statements(api, tokens, conn):
    for i in range(100):
        conn.execute("INSERT INTO person (email, full_name) VALUES (%s, 'P')", ('p%d@customer.example' % i,))
        conn.execute("INSERT INTO ticket (mailbox_id, title, person_id) VALUES (1, %s, currval('person_person_id_seq'))",
                     ('t%d' % i,))
        conn.execute("INSERT INTO interaction (ticket_id, mailbox_id, direction, type, status, message_id, thread_rule)"
                     " VALUES (currval('ticket_ticket_id_seq'), 1, 'inbound', 'Customer Email', 'Received', %s, 'new')",
                     ('<m%d@x>' % i,))

    def statements(http) -> float:
        text = http.get('/metrics').text
        return float(re.search(r'^postdesk_api_database_statements_total (\S+)$', text, re.M).group(1))
    with client(api, tokens['anna']) as http:
        before = statements(http)
        listed = http.get('/api/v1/Ticket', params={'$top': 100}).json()
        after = statements(http)
    assert listed['total'] == 100 and len(listed['items']) == 100
    assert all(len(item['Messages']) == 1 for item in listed['items'])
    assert after - before - 1 <= 4, 'auth, count, page, messages (and the depths of /metrics)'


def test_a_message_its_attachments_and_raw_bytes_byte_for_byte(api, tokens):
    pdf = b'%PDF-1.4\n' + bytes(range(256)) * 40
    message = make_message(body='Here is the invoice.\n', attachments=[('invoice 1001.pdf', 'application/pdf', pdf),
                                                                        ('page.html', 'text/html', b'<script>x</script>')])
    with client(api, tokens['anna']) as http:
        info = post_mail(http, message).json()
        shown = http.get('/api/v1/TicketMessage/%d' % info['InteractionId']).json()
        first = http.get(shown['Attachments'][0]['Url'])
        html_file = http.get(shown['Attachments'][1]['Url'])
        raw = http.get('/api/v1/TicketMessage/%d/Raw' % info['InteractionId'])
        ticket = http.get('/api/v1/Ticket/%d' % info['TicketId']).json()
    assert 'Here is the invoice.' in shown['PlainBody'] and shown['Body']
    headers = {h['Name']: h['Value'] for h in shown['MessageHeaders']}
    assert set(headers) >= {'From', 'To', 'Subject', 'Message-ID', 'Date'}
    assert datetime.datetime.fromisoformat(headers['Date']) == datetime.datetime(2026, 11, 16, 9, 0,
                                                                                 tzinfo=datetime.timezone.utc)
    assert [m['PersonId'] for m in ticket['Messages']] == [shown['PersonId']] == [ticket['Person']['PersonId']]
    assert [a['Name'] for a in shown['Attachments']] == ['invoice 1001.pdf', 'page.html']
    assert first.content == pdf and first.headers['content-type'] == 'application/pdf'
    assert first.headers['content-disposition'].startswith('attachment;')
    assert html_file.headers['content-disposition'].startswith('attachment;')
    assert html_file.headers['x-content-type-options'] == 'nosniff'
    assert raw.content == message and raw.headers['content-type'].startswith('message/rfc822')


def test_an_8bit_message_crosses_json_as_utf8_with_its_other_bytes_escaped(api, tokens):
    message = (b'From: Ren\xe9 <rene@customer.example>\r\nTo: %s\r\nSubject: Caf\xe9 ferm\xe9\r\n'
               b'Message-ID: <latin1@customer.example>\r\nContent-Type: text/plain; charset=iso-8859-1\r\n'
               b'Content-Transfer-Encoding: 8bit\r\n\r\nLe caf\xe9 est ferm\xe9.\r\n' % MAILBOX.encode())
    data = message.decode('utf-8', 'surrogateescape')          # as the README's one-liner sends a file
    with client(api, tokens['anna']) as http:
        info = http.post(MAIL_PATH, content=json.dumps({'MailboxId': 1, 'Data': data}),
                         headers={'Content-Type': 'application/json'}).json()
        raw = http.get('/api/v1/TicketMessage/%d/Raw' % info['InteractionId'])
        shown = http.get('/api/v1/TicketMessage/%d' % info['InteractionId']).json()
    assert raw.content == message
    assert info['Title'] == 'Café fermé' and 'Le café est fermé.' in shown['PlainBody']


def test_save_ticket_entity_updates_what_it_may_and_audits_the_agent(api, tokens, conn):
    with client(api, tokens['anna']) as http:
        ticket_id = new_ticket(http)['TicketId']
        saved = http.post(SAVE_PATH, json={
            'TicketId': ticket_id, 'Title': 'Order 1001 lost', 'BaseStatus': 'Closed', 'Category': {'Name': 'Orders'},
            'Priority': 'High', 'Tags': ['courier', {'Name': 'refund'}], 'Deadline': '2026-12-24T12:00:00+01:00',
            'CustomFields': {'OrderNumber': '1001'}, 'NumMessages': 99, 'CreatedAt': '2002-12-18T14:13:41+01:00',
            'ActiveStatusMonitorId': 3, 'OwnedBy': {'AssociateId': 1}})
    assert saved.status_code == 200, saved.text
    entity = saved.json()
    assert (entity['Title'], entity['BaseStatus'], entity['Status'], entity['Category'], entity['Priority']) == \
        ('Order 1001 lost', 'Closed', 'Closed', 'Orders', 'High')
    assert [tag['Name'] for tag in entity['Tags']] == ['courier', 'refund']
    assert entity['CustomFields'] == {'OrderNumber': '1001'}
    assert entity['NumMessages'] == 1 and entity['OwnedBy']['AssociateId'] == 1
    assert entity['ClosedAt'] == entity['LastChanged']        # one change, one time
    assert entity['Deadline'].startswith('2026-12-24T11:00:00')
    anna_id = conn.execute("SELECT agent_id FROM agent WHERE login = 'anna'").fetchone()[0]
    modifiers = set(conn.execute('SELECT modifier, modifier_id FROM status_audit WHERE ticket_id = %s',
                                 (ticket_id,)).fetchall())
    assert modifiers == {('anna', anna_id)}


def test_tags_are_the_seeds_objects_with_one_id_per_name(api, tokens):
    seed_tags = [{'Id': 131, 'Name': 'Bins, Willms and Fritsch', 'ToolTip': 'Quis magnam velit harum totam.'},
                 {'Id': 131, 'Name': 'Bins, Willms and Fritsch', 'ToolTip': 'Quis magnam velit harum totam.'},
                 {'Name': 'Thompson Group'}]
    with client(api, tokens['anna']) as http:
        first = new_ticket(http, message_id='<tags1@customer.example>')['TicketId']
        second = new_ticket(http, subject='Another order', message_id='<tags2@customer.example>')['TicketId']
        saved = http.post(SAVE_PATH, json={'TicketId': first, 'Tags': seed_tags})
        other = http.post(SAVE_PATH, json={'TicketId': second, 'Tags': ['Thompson Group']})
        shown = http.get('/api/v1/Ticket/%d' % first).json()
    assert saved.status_code == 200 and other.status_code == 200 and first != second, (saved.text, other.text)
    tags = saved.json()['Tags']
    assert [sorted(tag) for tag in tags] == [['Id', 'Name', 'ToolTip']] * 2
    assert [(tag['Name'], tag['ToolTip']) for tag in tags] == [
        ('Bins, Willms and Fritsch', 'Quis magnam velit harum totam.'), ('Thompson Group', '')]
    assert all(isinstance(tag['Id'], int) for tag in tags) and tags[0]['Id'] != tags[1]['Id']
    assert other.json()['Tags'][0]['Id'] == tags[1]['Id']
    assert shown['Tags'] == tags
    with client(api, tokens['anna']) as http:     # by its Id alone: our tag; with a Name: the tag of that name
        by_id = http.post(SAVE_PATH, json={'TicketId': second, 'Tags': [
            {'Id': tags[0]['Id']}, {'Id': tags[0]['Id'], 'Name': 'Thompson Group', 'ToolTip': 'not kept'}]})
        unknown = http.post(SAVE_PATH, json={'TicketId': second, 'Tags': [{'Id': 2 ** 31 - 1}]})
        after = http.get('/api/v1/Ticket/%d' % second).json()
    with client(api, tokens['sven']) as http:     # another mailbox's agent cannot read our tags' names by Id
        own = http.post(SAVE_PATH, json={'Title': 'Sven\'s own', 'FromAddress': 'c@customer.example'}).json()
        probe = http.post(SAVE_PATH, json={'TicketId': own['TicketId'], 'Tags': [{'Id': tags[0]['Id']}]})
    assert by_id.status_code == 200 and by_id.json()['Tags'] == tags, by_id.text     # a ToolTip stays the tag's
    assert unknown.status_code == 400 and after['Tags'] == tags
    assert probe.status_code == 400 and 'Bins' not in probe.text


def test_save_ticket_entity_creates_a_ticket_without_sending_mail(api, tokens, conn):
    with client(api, tokens['anna']) as http:
        created = http.post(SAVE_PATH, json={'TicketId': 0, 'Title': 'Call back about 1002',
                                             'Person': {'Email': 'bob@customer.example', 'FullName': 'Bob'}})
        incomplete = http.post(SAVE_PATH, json={'Title': 'no customer'})
        unknown_owner = http.post(SAVE_PATH, json={'TicketId': created.json()['TicketId'],
                                                   'OwnedBy': {'AssociateId': 4242}})
    assert created.status_code == 200, created.text
    entity = created.json()
    assert (entity['Title'], entity['Person']['Email'], entity['NumMessages']) == ('Call back about 1002',
                                                                                   'bob@customer.example', 0)
    assert incomplete.status_code == 400 and unknown_owner.status_code == 400
    assert conn.execute('SELECT count(*) FROM outbox').fetchone()[0] == 0


def test_a_stale_if_match_gets_412_and_changes_nothing(api, tokens):
    with client(api, tokens['anna']) as http:
        ticket_id = new_ticket(http)['TicketId']
        etag = http.get('/api/v1/Ticket/%d' % ticket_id).headers['ETag']
        first = http.post(SAVE_PATH, json={'TicketId': ticket_id, 'Title': 'first'}, headers={'If-Match': etag})
        stale = http.post(SAVE_PATH, json={'TicketId': ticket_id, 'Title': 'second'}, headers={'If-Match': etag})
        unconditional = http.post(SAVE_PATH, json={'TicketId': ticket_id, 'Priority': 'Low'})
        shown = http.get('/api/v1/Ticket/%d' % ticket_id).json()
    assert first.status_code == 200 and first.headers['ETag'] != etag
    assert stale.status_code == 412
    assert unconditional.status_code == 200 and (shown['Title'], shown['Priority']) == ('first', 'Low')


def test_if_none_match_with_the_current_etag_is_304_until_the_ticket_changes(api, tokens):
    with client(api, tokens['anna']) as http:
        ticket_id = new_ticket(http)['TicketId']
        etag = http.get('/api/v1/Ticket/%d' % ticket_id).headers['ETag']
        unchanged = http.get('/api/v1/Ticket/%d' % ticket_id, headers={'If-None-Match': 'W/%s' % etag})
        http.post(SAVE_PATH, json={'TicketId': ticket_id, 'Title': 'changed'})
        changed = http.get('/api/v1/Ticket/%d' % ticket_id, headers={'If-None-Match': etag})
    assert (unchanged.status_code, unchanged.content, unchanged.headers['ETag']) == (304, b'', etag)
    assert changed.status_code == 200 and changed.json()['Title'] == 'changed' and changed.headers['ETag'] != etag


def test_round_robin_spreads_twenty_concurrent_saves_evenly(api, tokens, conn):
    for login in ('bea', 'carl', 'dora'):
        new_agent(conn, login, MAILBOX)
    with client(api, tokens['anna']) as http:
        ids = [new_ticket(http, message_id='<rr%d@customer.example>' % i)['TicketId'] for i in range(20)]

    def assign(ticket_id: int) -> int:
        with client(api, tokens['anna']) as http:
            answer = http.post(SAVE_PATH, json={'TicketId': ticket_id, 'OwnedBy': {'AssociateId': 2147483647}})
            assert answer.status_code == 200, answer.text
            return answer.json()['OwnedBy']['AssociateId']
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        owners = list(pool.map(assign, ids))
    counts = sorted(owners.count(agent) for agent in set(owners))
    assert len(set(owners)) == 4 and counts == [5, 5, 5, 5]


def test_so_timezone_converts_dates_and_an_unknown_zone_is_400(api, tokens, conn):
    with client(api, tokens['anna']) as http:
        ticket_id = new_ticket(http)['TicketId']
        utc = http.get('/api/v1/Ticket/%d' % ticket_id).json()
        tokyo = http.get('/api/v1/Ticket/%d' % ticket_id, headers={'SO-TimeZone': 'Asia/Tokyo'}).json()
        unknown = http.get('/api/v1/Ticket/%d' % ticket_id, headers={'SO-TimeZone': 'Mars/Olympus'})
        created = http.post(MAIL_PATH, headers={'SO-TimeZone': 'Mars/Olympus'}, json={
            'MailboxId': 1, 'Data': make_message(message_id='<zone@customer.example>').decode()})
    assert tokyo['CreatedAt'].endswith('+09:00')
    assert datetime.datetime.fromisoformat(tokyo['CreatedAt']) == datetime.datetime.fromisoformat(utc['CreatedAt'])
    assert unknown.status_code == 400
    assert created.status_code == 400 and 'SO-TimeZone' in created.json()['Error']
    assert conn.execute("SELECT count(*) FROM interaction WHERE message_id = 'zone@customer.example'"
                        ).fetchone()[0] == 0


# ------------------------------------------------------------------------------------------ iService

def seed_request(interaction_id: int, **answer) -> dict:
    request = json.loads((DATA / 'sendleaveopen_request.json').read_text())
    request['interactionIDs'] = [str(interaction_id)]
    request['interactionID'] = str(interaction_id)
    request['answer'].update({'inResponseToID': str(interaction_id), 'destEmail': 'anna@customer.example', **answer})
    return request


def same_keys(expected, actual, where='response') -> list[str]:
    """Where `actual` lacks a key that the seed's example has, or has one the example does not, at any level
    (lists: their first items)."""
    differences = []
    if isinstance(expected, dict) and isinstance(actual, dict):
        differences += ['%s.%s missing' % (where, key) for key in expected if key not in actual]
        differences += ['%s.%s extra' % (where, key) for key in actual if key not in expected]
        for key in expected:
            if key in actual:
                differences += same_keys(expected[key], actual[key], '%s.%s' % (where, key))
    elif isinstance(expected, list) and expected and isinstance(actual, list) and actual:
        differences += same_keys(expected[0], actual[0], where + '[0]')
    return differences


def test_sendleaveopen_with_the_seed_payload_answers_the_seeds_keys_at_every_level(api, tokens, conn):
    for login in ('postdesk', 'anna@customer.example'):     # agents named as the system and the customer are
        new_agent(conn, login, MAILBOX)                      # not the modifiers of what those did
    with client(api, tokens['anna']) as http:
        info = new_ticket(http)
        answer = http.post('/webapp-api-mq-myqueue', params={'api': 'sendleaveopen'},
                           json=seed_request(info['InteractionId']))
        shown = http.get('/api/v1/Ticket/%d' % info['TicketId']).json()
    assert answer.status_code == 200, answer.text
    result = answer.json()
    example = json.loads((DATA / 'sendleaveopen_response.json').read_text())
    assert list(result) == list(example)
    assert same_keys(example, result) == []
    assert result['errors'] == [] and result['response']['row']['status'] == 'Unsent'
    [group] = result['details']['caseProperties']
    assert group['properties'][0]['name'] == 'Account Number'
    assert group['properties'][0]['values'][0]['value'] == 'Platinum'
    assert shown['BaseStatus'] == 'Active' and shown['NumReplies'] == 1
    assert shown['CustomFields']['threadProperties'][0]['propertyName'] == 'Account Number'
    assert conn.execute("SELECT modifier FROM status_audit WHERE action = 'Sent and left open'").fetchone()[0] == 'anna'
    assert result['details']['customerID'] == str(shown['Person']['PersonId'])
    details = result['details']
    assert MAILBOX in details['headerTo'] and 'my order has not arrived' in details['questionHtml']
    assert (details['dateResolved'], details['resolvedByName']) == ('0001-01-01T00:00:00Z', '')    # still open
    anna_id = conn.execute("SELECT agent_id FROM agent WHERE login = 'anna'").fetchone()[0]
    assert [(a['action'], a['modifierID'], a['modifierName']) for a in result['details']['statusAudit']] == [
        ('Created from email', str(anna_id), 'anna')], result['details']['statusAudit']
    audit = result['response']['details']['statusAudit']
    assert [(a['action'], a['modifierID'], a['statusName']) for a in audit] == [
        ('Queued for delivery', str(anna_id), 'Unsent'), ('Sent and left open', str(anna_id), 'Open')], audit


def test_send_closes_and_attachments_are_base64(api, tokens, conn):
    with client(api, tokens['anna']) as http:
        info = new_ticket(http)
        before = http.get('/api/v1/Ticket/%d' % info['TicketId']).json()
        request = seed_request(info['InteractionId'], attachments=[
            {'fileName': 'label.txt', 'contentType': 'text/plain', 'data': base64.b64encode(b'parcel 1001').decode()}])
        answer = http.post('/webapp-api-mq-myqueue', params={'api': 'send'}, json=request)
        shown = http.get('/api/v1/Ticket/%d' % info['TicketId']).json()
    assert answer.status_code == 200, answer.text
    assert (before['HasAttachment'], shown['HasAttachment']) == (False, True)     # the reply's attachment counts
    details = answer.json()['details']
    assert details['resolvedByName'] == 'anna' and details['dateResolved'].startswith(shown['ClosedAt'][:16])
    assert [a['name'] for a in answer.json()['response']['details']['attachments']] == ['label.txt']
    assert shown['BaseStatus'] == 'Closed'
    assert [a['statusName'] for a in answer.json()['response']['details']['statusAudit']] == ['Unsent', 'Closed']
    data = conn.execute('SELECT data FROM outbox').fetchone()[0]
    assert base64.b64encode(b'parcel 1001') in bytes(data)


def test_a_message_the_customer_sent_is_audited_as_the_customers(api, tokens):
    import smtplib
    with smtplib.SMTP('127.0.0.1', api.smtp_port) as smtp:
        smtp.sendmail('anna@customer.example', [MAILBOX], make_message(message_id='<by-smtp@customer.example>'))
    with client(api, tokens['anna']) as http:
        wait_for(lambda: http.get('/api/v1/Ticket').json()['total'] == 1)      # stored by the spool's worker
        [ticket] = http.get('/api/v1/Ticket').json()['items']
        answer = http.post('/webapp-api-mq-myqueue', params={'api': 'sendleaveopen'},
                           json=seed_request(ticket['Messages'][0]['TicketMessageId']))
    details = answer.json()['details']
    assert [(a['action'], a['modifierID'], a['modifierName']) for a in details['statusAudit']] == [
        ('Created from email', details['customerID'], 'anna@customer.example')]


def test_the_questions_attachments_are_listed_in_the_details(api, tokens):
    with client(api, tokens['anna']) as http:
        info = new_ticket(http, message_id='<with-file@customer.example>',
                          attachments=[('invoice.pdf', 'application/pdf', b'%PDF-1.4 invoice')])
        answer = http.post('/webapp-api-mq-myqueue', params={'api': 'sendleaveopen'},
                           json=seed_request(info['InteractionId']))
    assert answer.status_code == 200, answer.text
    assert [(a['name'], a['contentType'], a['size']) for a in answer.json()['details']['attachments']] == [
        ('invoice.pdf', 'application/pdf', 16)]


def test_a_request_that_cannot_be_carried_out_changes_nothing_and_says_why(api, tokens, conn):
    with client(api, tokens['anna']) as anna, client(api, tokens['sven']) as sven:
        info = new_ticket(anna)
        answers = [anna.post('/webapp-api-mq-myqueue', params={'api': 'sendleaveopen'}, json=seed_request(999999)),
                   sven.post('/webapp-api-mq-myqueue', params={'api': 'sendleaveopen'},
                             json=seed_request(info['InteractionId'])),
                   anna.post('/webapp-api-mq-myqueue', params={'api': 'sendleaveopen'},
                             json=seed_request(info['InteractionId'], destEmail='not an address')),
                   anna.post('/webapp-api-mq-myqueue', params={'api': 'sendleaveopen'},
                             json=seed_request(info['InteractionId'], bodyHtml=''))]
    assert [a.status_code for a in answers] == [404, 404, 400, 400]
    for answer in answers:
        assert set(answer.json()) == {'errors', 'errorDetails', 'numCanGet', 'numCanApprove', 'row', 'details',
                                      'response'}
        assert answer.json()['errors']
    assert answers[0].json()['errors'] == ['no interaction 999999']
    assert conn.execute('SELECT count(*) FROM outbox').fetchone()[0] == 0
    assert conn.execute("SELECT custom_fields FROM ticket").fetchone()[0] == {}


def test_a_reply_sets_the_thread_properties_it_names_and_keeps_the_others(api, tokens):
    def prop(number: str, name: str, value: str) -> dict:
        return {'propertyID': number, 'propertyName': name, 'values': [{'value': value}]}

    def values(answer: httpx.Response) -> dict:
        [group] = answer.json()['details']['caseProperties']
        return {p['name']: [v['value'] for v in p['values']] for p in group['properties']}
    with client(api, tokens['anna']) as http:
        interaction = new_ticket(http)['InteractionId']
        answers = [http.post('/webapp-api-mq-myqueue', params={'api': 'sendleaveopen'},
                             json=seed_request(interaction, threadProperties=given))
                   for given in ([prop('11', 'Account Number', 'Platinum')], [prop('12', 'Region', 'EMEA')],
                                 [prop(11, 'Account Number', 'Gold')], [])]
    assert [a.status_code for a in answers] == [200] * 4, answers[-1].text
    assert values(answers[1]) == {'Account Number': ['Platinum'], 'Region': ['EMEA']}
    assert values(answers[2]) == values(answers[3]) == {'Account Number': ['Gold'], 'Region': ['EMEA']}


def test_text_or_addresses_that_would_be_changed_on_the_way_out_are_refused(api, tokens, conn):
    """A line break in destEmail would name another recipient (an injected Bcc:); a NUL or a lone surrogate
    would be dropped or replaced on the way into the mail: each is answered 400 and nothing is queued."""
    with client(api, tokens['anna']) as anna:
        info = new_ticket(anna)
        interaction = info['InteractionId']

        def post(request: dict) -> httpx.Response:
            return anna.post('/webapp-api-mq-myqueue', params={'api': 'sendleaveopen'},
                             content=json.dumps(request).encode(), headers={'Content-Type': 'application/json'})
        answers = {
            'injected Bcc': post(seed_request(interaction, destEmail='a@b.example\r\nBcc: victim@x.example')),
            'NUL in body': post(seed_request(interaction, bodyHtml='x\u0000y')),
            'lone surrogate': post(seed_request(interaction, subject='\ud800')),
            'other interaction': post({**seed_request(interaction), 'interactionIDs': [str(interaction + 1)]}),
            'which of two': post({'interactionIDs': [str(interaction), str(interaction + 1)],
                                  'answer': {'bodyHtml': 'x', 'destEmail': 'anna@customer.example'}}),
        }
    assert {name: a.status_code for name, a in answers.items()} == dict.fromkeys(answers, 400)
    assert 'control character' in answers['injected Bcc'].json()['errors'][0]
    assert 'NUL' in answers['NUL in body'].json()['errors'][0]
    assert 'surrogate' in answers['lone surrogate'].json()['errors'][0]
    assert conn.execute('SELECT count(*) FROM outbox').fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM interaction WHERE direction = 'outbound'").fetchone()[0] == 0


def shape(value):
    """The keys of a JSON value at every level, without the values."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return None


def test_the_reply_in_the_answer_is_what_postdesk_reply_json_prints(api, tokens, run_postdesk):
    with client(api, tokens['anna']) as http:
        first = new_ticket(http, message_id='<one@customer.example>')
        second = new_ticket(http, message_id='<two@customer.example>', subject='Another question')
        answer = http.post('/webapp-api-mq-myqueue', params={'api': 'sendleaveopen'},
                           json=seed_request(first['InteractionId'], threadProperties=[]))
    printed = run_postdesk('reply', str(second['TicketId']), '--text', 'Hello', '--leave-open', '--json',
                           check=True)
    assert shape(answer.json()) == shape(json.loads(printed.stdout))


# ------------------------------------------------------------------------------------------ metrics, shutdown

def test_metrics_count_requests_smtp_replies_outcomes_and_depths(api, tokens):
    import smtplib
    with smtplib.SMTP('127.0.0.1', api.smtp_port) as smtp:
        smtp.sendmail('anna@customer.example', [MAILBOX], make_message(message_id='<m1@customer.example>'))
    with client(api, tokens['anna']) as http:
        new_ticket(http, message_id='<m2@customer.example>')
        wait_for(lambda: 'postdesk_messages_stored_total{outcome="new"} 2.0' in http.get('/metrics').text)
        text = http.get('/metrics').text
    assert 'postdesk_smtp_replies_total{code="250",protocol="smtp"}' in text
    assert re.search(r'postdesk_api_requests_total\{method="POST",route="%s",status="200"\} 1\.0' % MAIL_PATH, text)
    assert 'postdesk_api_request_duration_seconds_bucket' in text
    assert 'postdesk_queue_depth{queue="spool"} 0.0' in text and 'postdesk_queue_depth{queue="outbox"}' in text


def test_a_shutdown_whose_grace_ends_answers_each_message_as_what_became_of_it(db_url, tmp_path, tokens):
    """More messages than the grace lets be stored: each request is answered 200 (and its message is stored) or
    503 (and it is not: the client sends it again), never 503 for a message that is then stored."""
    running = Server(db_url, tmp_path, {'POSTDESK_SHUTDOWN_GRACE': '1'})
    big = ('x' * 76 + '\n') * 13_000
    messages = {'<grace-%d@x>' % n: make_message(message_id='<grace-%d@x>' % n, body=big) for n in range(24)}
    answers: dict[str, int] = {}

    def send(message_id: str) -> None:
        with client(running, tokens['anna']) as http:
            try:
                answers[message_id] = post_mail(http, messages[message_id]).status_code
            except httpx.TransportError:
                answers[message_id] = 0
    threads = [threading.Thread(target=send, args=(message_id,)) for message_id in messages]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(answers) >= 2)                  # the others are received, waiting or being stored
    running.process.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(90)
    assert running.stop() == 0
    with psycopg.connect(db_url, autocommit=True) as conn:
        stored = {'<%s>' % row[0] for row in conn.execute('SELECT message_id FROM interaction').fetchall()}
    assert set(answers.values()) <= {200, 503, 0}, answers
    assert {m for m, status in answers.items() if status == 200} <= stored
    assert not {m for m, status in answers.items() if status == 503} & stored, answers


def test_sigterm_lets_requests_in_flight_finish_and_exits_0(db_url, tmp_path, tokens):
    running = Server(db_url, tmp_path)
    answers, errors = [], []

    def work(worker: int):
        with client(running, tokens['anna']) as http:
            for i in range(200):
                try:
                    answers.append(post_mail(http, make_message(message_id='<t%d-%d@x>' % (worker, i))).status_code)
                except httpx.TransportError as error:       # refused or closed once the server stopped
                    errors.append(error)
                    return
    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(answers) >= 20)
    running.process.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(60)
    assert running.stop() == 0
    assert answers and set(answers) == {200}, 'every request answered was answered in full'
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert conn.execute('SELECT count(*) FROM interaction').fetchone()[0] >= len(answers)
