"""What a client can send that no ordinary client would, on a real `postdesk serve --http` and a real PostgreSQL:
text PostgreSQL cannot hold, dates at the ends of the calendar, identifiers in other scripts, values too long for
an index, headers without end, a storm of wrong passwords, another mailbox's tickets and agents named by id; and
what the server lives through: its connections terminated, a shutdown that outlasts its grace. Every answer is a
JSON status a client can act on, never a 500, and nothing is stored half."""
from __future__ import annotations

import concurrent.futures
import json
import socket
import threading
import time

import httpx
import psycopg

from mails import make_message
from test_api import (MAIL_PATH, SAVE_PATH, api, client, mailboxes, new_ticket, post_mail, seed_request,  # noqa: F401
                      tokens)
from test_serve import Server

ISERVICE = '/webapp-api-mq-myqueue'


def raw_json(http: httpx.Client, path: str, text: str, **params) -> httpx.Response:
    """A body sent as written: JSON escapes such as \\u0000 and lone \\ud800 reach the server untouched."""
    return http.post(path, content=text.encode(), params=params, headers={'Content-Type': 'application/json'})


def assert_json_status(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers['content-type'].startswith('application/json')
    assert response.json()['Status'] == status and response.json()['Error']


def ticket_count(conn) -> int:
    return conn.execute('SELECT count(*) FROM ticket').fetchone()[0]


def test_text_postgresql_cannot_hold_is_400_and_stores_nothing(api, tokens, conn):
    with client(api, tokens['anna']) as http:
        info = new_ticket(http)
        before = ticket_count(conn)
        answers = [
            raw_json(http, SAVE_PATH, '{"TicketId": %d, "Title": "a\\u0000b"}' % info['TicketId']),
            raw_json(http, SAVE_PATH, '{"TicketId": %d, "Title": "\\ud800"}' % info['TicketId']),
            raw_json(http, SAVE_PATH, '{"Title": "new", "Person": {"Email": "x\\u0000@customer.example"}}'),
            raw_json(http, SAVE_PATH, '{"TicketId": %d, "CustomFields": {"k": "\\u0000"}}' % info['TicketId']),
            raw_json(http, MAIL_PATH, '{"MailboxId": 1, "Data": "Subject: x\\r\\n\\r\\n\\udfff"}'),
        ]
        shown = http.get('/api/v1/Ticket/%d' % info['TicketId']).json()
    for answer in answers:
        assert_json_status(answer, 400)
    assert ticket_count(conn) == before and shown['Title'] == info['Title']


def test_digits_of_other_scripts_are_not_ids(api, tokens):
    with client(api, tokens['anna']) as http:
        info = new_ticket(http)
        superscript = http.post(ISERVICE, params={'api': 'send'},
                                json=seed_request(info['InteractionId'], inResponseToID='\u00b2'))
        for path in ('/api/v1/Ticket/\u00b2', '/api/v1/TicketMessage/\u0663', '/api/v2/interactions/\u00b2'):
            assert http.get(path).status_code in (400, 404), path
    assert superscript.status_code == 400 and superscript.json()['errors']


def test_dates_at_the_ends_of_the_calendar_are_400_and_lists_still_answer(api, tokens):
    with client(api, tokens['anna']) as http:
        info = new_ticket(http)
        answers = [http.post(SAVE_PATH, json={'TicketId': info['TicketId'], 'Deadline': deadline})
                   for deadline in ('0001-01-01T00:00:00+14:00', '9999-12-31T23:59:59-14:00', '0001-01-01')]
        answers.append(http.get('/api/v1/Ticket', params={'$filter': 'LastChanged gt 0001-01-01T00:00:00+14:00'}))
        kept = http.post(SAVE_PATH, json={'TicketId': info['TicketId'], 'Deadline': '2030-06-01T12:00:00Z'})
        listed = http.get('/api/v1/Ticket', headers={'SO-TimeZone': 'Pacific/Kiritimati'})
    for answer in answers:
        assert_json_status(answer, 400)
    assert kept.status_code == 200 and kept.json()['Deadline'].startswith('2030-06-01T12:00:00')
    assert listed.status_code == 200 and listed.json()['items'][0]['Deadline'].startswith('2030-06-02T02:00:00+14')


def follow(http: httpx.Client, since: str) -> tuple[list[dict], str]:
    """One step of a client syncing by `LastChanged gt`: the changes after its watermark, and the new watermark."""
    items = http.get('/api/v1/Ticket', params={'$filter': 'LastChanged gt %s' % since, '$top': 500}).json()['items']
    return items, max([since] + [item['LastChanged'] for item in items])


def test_a_client_syncing_by_last_changed_misses_no_commit(api, tokens, conn, db_url):
    with client(api, tokens['anna']) as http:
        first = new_ticket(http)
        since = http.get('/api/v1/Ticket/%d' % first['TicketId']).json()['LastChanged']
        with psycopg.connect(db_url) as slow:
            slow.execute("UPDATE ticket SET title = 'changed slowly', last_changed = now() WHERE ticket_id = %s",
                         (first['TicketId'],))
            time.sleep(0.05)
            second = new_ticket(http, message_id='<second@customer.example>', subject='Second')
            seen, since = follow(http, since)
            slow.commit()
        later, since = follow(http, since)
    titles = {item['TicketId']: item['Title'] for item in seen + later}
    assert titles.get(first['TicketId']) == 'changed slowly'
    assert second['TicketId'] in titles


def terminate_server_connections(conn) -> int:
    return conn.execute('SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity '
                        'WHERE datname = current_database() AND pid <> pg_backend_pid()').fetchone()[0]


def test_connections_terminated_under_the_server_are_replaced_without_an_error(api, tokens, conn):
    with client(api, tokens['anna']) as http:
        info = new_ticket(http)
        for round_ in range(3):
            assert terminate_server_connections(conn) > 0
            reads = [http.get('/api/v1/Ticket/%d' % info['TicketId']).status_code for _ in range(12)]
            save = http.post(SAVE_PATH, json={'TicketId': info['TicketId'], 'Title': 'round %d' % round_})
            assert reads == [200] * 12 and save.status_code == 200, save.text


def test_a_request_still_running_when_the_grace_ends_gets_its_real_answer(db_url, tmp_path, tokens, conn):
    running = Server(db_url, tmp_path, {'POSTDESK_SHUTDOWN_GRACE': '1'}, args=('--smtp', 'off', '--lmtp', 'off'))
    answers = []
    try:
        with client(running, tokens['anna']) as http:
            info = new_ticket(http)
            with psycopg.connect(db_url) as blocker:
                blocker.execute('SELECT 1 FROM ticket WHERE ticket_id = %s FOR UPDATE', (info['TicketId'],))
                saving = threading.Thread(target=lambda: answers.append(http.post(
                    SAVE_PATH, json={'TicketId': info['TicketId'], 'Title': 'saved during shutdown'})))
                saving.start()
                time.sleep(0.5)
                running.process.terminate()
                time.sleep(2)
            saving.join(30)
    finally:
        code = running.stop()
    title = conn.execute('SELECT title FROM ticket WHERE ticket_id = %s', (info['TicketId'],)).fetchone()[0]
    [answer] = answers
    assert answer.headers['content-type'].startswith('application/json')
    assert (answer.status_code, answer.json()['Title']) == (200, 'saved during shutdown')
    assert title == 'saved during shutdown' and code == 0


def test_an_upload_the_grace_cuts_off_gets_503_and_no_traceback_in_the_log(db_url, tmp_path, tokens):
    running = Server(db_url, tmp_path, {'POSTDESK_SHUTDOWN_GRACE': '1'}, args=('--smtp', 'off', '--lmtp', 'off'))
    try:
        with socket.create_connection(('127.0.0.1', running.http_port), timeout=20) as sock:
            sock.sendall(b'POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n'
                         b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"MailboxId": 1, '
                         % (SAVE_PATH.encode(), tokens['anna'].encode()))
            time.sleep(0.5)
            running.process.terminate()
            answer = sock.recv(65536)
    finally:
        code = running.stop()
    assert answer.startswith(b'HTTP/1.1 503') and b'retry-after' in answer.lower(), answer
    assert code == 0
    log = '\n'.join(running.lines)
    assert 'Traceback' not in log and 'Exception in ASGI application' not in log, log


def send_raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(('127.0.0.1', port), timeout=10) as sock:
        try:
            sock.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            pass
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b''.join(chunks)


def test_headers_without_end_are_refused_and_the_server_goes_on(api, tokens):
    many = b''.join(b'X-Filler-%d: %s\r\n' % (n, b'y' * 1000) for n in range(300))
    answer = send_raw(api.http_port, b'GET /healthz HTTP/1.1\r\nHost: x\r\n' + many + b'\r\n')
    long_url = send_raw(api.http_port, b'GET /healthz?' + b'q' * 200_000 + b' HTTP/1.1\r\nHost: x\r\n\r\n')
    assert answer.startswith(b'HTTP/1.1 431 ') and b'application/json' in answer
    assert long_url.startswith(b'HTTP/1.1 431 ') or long_url.startswith(b'HTTP/1.1 414 ')
    with client(api) as http:
        assert http.get('/healthz').status_code == 200


def test_values_too_long_for_postgresql_are_400(api, tokens, conn):
    with client(api, tokens['anna']) as http:
        before = ticket_count(conn)
        long_email = http.post(SAVE_PATH, json={'Title': 'x', 'Person': {'Email': 'a' * 3000 + '@customer.example'}})
        long_from = http.post(SAVE_PATH, json={'Title': 'x', 'FromAddress': 'b' * 3000 + '@customer.example'})
    assert_json_status(long_email, 400)
    assert_json_status(long_from, 400)
    assert ticket_count(conn) == before


def test_a_storm_of_wrong_credentials_is_held_to_the_limit(api):
    with client(api, 'wrong-token') as http, concurrent.futures.ThreadPoolExecutor(30) as pool:
        statuses = list(pool.map(lambda _: http.get('/api/v1/Ticket').status_code, range(30)))
    assert statuses.count(401) == 10 and statuses.count(429) == 20, statuses


def test_another_mailboxs_tickets_and_agents_cannot_be_named(api, tokens, conn):
    with client(api, tokens['anna']) as anna, client(api, tokens['sven']) as sven:
        mine = new_ticket(anna)
        theirs = post_mail(sven, make_message(to='sales@helpdesk.example', message_id='<sales@customer.example>'),
                           mailbox_id=2).json()
        sven_id = conn.execute("SELECT agent_id FROM agent WHERE login = 'sven'").fetchone()[0]
        linked = anna.post(SAVE_PATH, json={'TicketId': mine['TicketId'], 'ConnectId': theirs['TicketId']})
        missing = anna.post(SAVE_PATH, json={'TicketId': mine['TicketId'], 'ConnectId': 10 ** 9})
        owned = anna.post(SAVE_PATH, json={'TicketId': mine['TicketId'], 'OwnedBy': {'AssociateId': sven_id}})
    assert_json_status(linked, 400)
    assert_json_status(owned, 400)
    assert linked.json()['Error'] == missing.json()['Error'].replace(str(10 ** 9), str(theirs['TicketId']))
    assert conn.execute('SELECT connect_id, owned_by FROM ticket WHERE ticket_id = %s',
                        (mine['TicketId'],)).fetchone() == (None, None)


def test_a_message_an_agent_hands_in_is_audited_as_that_agent(api, tokens, conn):
    with client(api, tokens['anna']) as http:
        info = new_ticket(http)
    modifiers = {row[0] for row in conn.execute('SELECT modifier FROM status_audit WHERE ticket_id = %s',
                                                (info['TicketId'],))}
    assert modifiers == {'anna'}


def test_the_subject_of_an_iservice_answer_is_the_subject_sent(api, tokens, conn):
    with client(api, tokens['anna']) as http:
        info = new_ticket(http)
        answer = http.post(ISERVICE, params={'api': 'sendleaveopen'},
                           json=seed_request(info['InteractionId'], subject='Your parcel 1001 is on its way'))
    assert answer.status_code == 200, answer.text
    data = bytes(conn.execute('SELECT data FROM outbox').fetchone()[0])
    subject = [line for line in data.split(b'\r\n') if line.startswith(b'Subject:')][0]
    assert b'Your parcel 1001 is on its way' in subject and b'ref#' in subject


def test_an_attachment_is_served_with_its_own_type_only(api, tokens):
    message = make_message(attachments=[('notes.txt', 'text/plain', b'hello')])
    with client(api, tokens['anna']) as http:
        info = post_mail(http, message).json()
        [message_id] = [m['TicketMessageId'] for m in http.get('/api/v1/Ticket/%d' % info['TicketId']).json()['Messages']]
        served = http.get('/api/v1/TicketMessage/%d/Attachment/1' % message_id)
    assert served.status_code == 200 and served.content == b'hello'
    assert served.headers['content-type'] == 'text/plain'


def test_credentials_come_before_the_body(api):
    with client(api) as http:
        malformed = http.post(MAIL_PATH, content=b'{"MailboxId": ', headers={'Content-Type': 'application/json'})
        invalid = http.post(SAVE_PATH, json={'TicketId': 'x'})
    assert_json_status(malformed, 401)
    assert_json_status(invalid, 401)
    assert 'WWW-Authenticate' in malformed.headers


def test_small_liberties_clients_take(api, tokens, conn):
    with client(api, tokens['anna']) as http:
        info = new_ticket(http)
        ticket = http.get('/api/v1/Ticket/%d' % info['TicketId'])
        weak = http.post(SAVE_PATH, json={'TicketId': info['TicketId'], 'Title': 'weak'},
                         headers={'If-Match': 'W/' + ticket.headers['ETag']})
        boolean = http.post(SAVE_PATH, json={'Title': 't', 'FromAddress': 'c@customer.example', 'MailboxId': True})
        blank = http.post(SAVE_PATH, json={'TicketId': info['TicketId'], 'Title': '   '})
        tagged = http.post(SAVE_PATH, json={'TicketId': info['TicketId'], 'Tags': ['vip', 'vip', {'Name': 'vip'}]})
        document = http.get('/openapi.json').json()
    assert_json_status(weak, 412)
    assert_json_status(boolean, 400)
    assert_json_status(blank, 400)
    assert tagged.status_code == 200 and [tag['Name'] for tag in tagged.json()['Tags']] == ['vip']
    get_ticket = document['paths']['/api/v1/Ticket/{ticket_id}']['get']['responses']['200']
    assert 'ETag' in get_ticket.get('headers', {})
    [api_param] = [p for p in document['paths'][ISERVICE]['post']['parameters'] if p['name'] == 'api']
    assert sorted(api_param['schema']['enum']) == ['send', 'sendleaveopen']
    assert json.loads(json.dumps(document))


def test_a_ticket_id_that_is_not_one_is_400_after_the_credentials(api, tokens):
    """An id is ASCII digits (leading zeros are still the number): '+1', ' 1', '1_0' (which int() reads as 10),
    '1.0' would otherwise name one ticket by many paths."""
    with client(api, tokens['anna']) as http:
        ticket_id = new_ticket(http)['TicketId']
        forms = ('0', '-3', 'abc', '1.5', '9' * 20, '+%d' % ticket_id, '%%20%d' % ticket_id, '%d.0' % ticket_id,
                 '%d_0' % ticket_id, '1_%d' % ticket_id)
        answers = {path: http.get('/api/v1/Ticket/%s' % path) for path in forms}
        messages = {path: http.get('/api/v1/TicketMessage/%s' % path) for path in forms[5:]}
        padded = http.get('/api/v1/Ticket/0%d' % ticket_id)
        filtered = http.get('/api/v1/Ticket', params={'$filter': 'MailboxId eq \u0661'})
    with client(api) as anonymous:
        unauthenticated = anonymous.get('/api/v1/Ticket/abc')
    for path, answer in answers.items():
        assert_json_status(answer, 400)
        assert answer.json()['Details'][0]['loc'] == ['path', 'ticket_id'], path
    for path, answer in messages.items():
        assert_json_status(answer, 400)
    assert padded.json()['TicketId'] == ticket_id
    assert_json_status(filtered, 400)
    assert 'MailboxId in $filter' in filtered.json()['Error']       # the field as the client names it
    assert_json_status(unauthenticated, 401)
    assert 'WWW-Authenticate' in unauthenticated.headers
