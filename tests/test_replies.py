"""Agents' replies and automatic acknowledgements as an operator sees them: `postdesk reply --json`
(iService's sendleaveopen response), `ticket show`, the outbox rows they leave behind, and what a delivery report
about one of our own replies does to its ticket.
"""
from __future__ import annotations

import email
import email.policy
import json

from ingest import parse_message
from mails import MAILBOX, make_bounce, make_message

CUSTOMER = 'anna@customer.example'
RESPONSE_KEYS = {'errors', 'errorDetails', 'numCanGet', 'numCanApprove', 'row', 'details', 'response'}


# ------------------------------------------------------------------------------------------------- helpers

def lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def add_mailbox(run_postdesk, address: str = MAILBOX, *extra: str) -> None:
    result = run_postdesk('mailbox', 'add', address, '--name', 'Support', '--default', *extra)
    assert result.returncode == 0, result.stderr


def replay(run_postdesk, tmp_path, *messages: bytes) -> list[dict]:
    """Replay the messages (one folder, in order); the TicketInfo of each."""
    folder = tmp_path / ('in-%d' % len(list(tmp_path.glob('in-*'))))
    folder.mkdir()
    for number, data in enumerate(messages):
        (folder / ('%03d.eml' % number)).write_bytes(data)
    result = run_postdesk('replay', '--json', str(folder))
    outcomes = lines(result.stdout)
    assert len(outcomes) == len(messages), result.stderr
    return outcomes


def new_ticket(run_postdesk, tmp_path, **message) -> dict:
    [outcome] = replay(run_postdesk, tmp_path, make_message(**message))
    assert outcome['Outcome'] == 'new', outcome
    return outcome


def reply(run_postdesk, ticket_id: int, *args: str) -> dict:
    result = run_postdesk('reply', str(ticket_id), '--json', *args)
    assert result.returncode == 0, result.stderr
    [response] = lines(result.stdout)
    return response


def show(run_postdesk, ticket_id: int) -> dict:
    result = run_postdesk('ticket', 'show', str(ticket_id), '--json')
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def outbox_rows(conn, kind: str | None = None) -> list[tuple]:
    """(outbox_id, interaction_id, ticket_id, rcpt_to, data, kind, message_id, state) of every outbox row."""
    return conn.execute('SELECT outbox_id, interaction_id, ticket_id, rcpt_to, data, kind, message_id, state '
                        'FROM outbox WHERE %s::text IS NULL OR kind = %s ORDER BY outbox_id',
                        (kind, kind)).fetchall()


def mime(data) -> email.message.EmailMessage:
    return email.message_from_bytes(bytes(data), policy=email.policy.default)


def header_block(data) -> bytes:
    return bytes(data).split(b'\r\n\r\n', 1)[0]


def html_part(message: email.message.EmailMessage) -> str:
    return message.get_body(preferencelist=('html',)).get_content()


# ------------------------------------------------------------------------------------- the response object

def test_reply_leave_open_json_is_iservice_response_with_unsent_reply(run_postdesk, tmp_path, conn):
    add_mailbox(run_postdesk)
    question = new_ticket(run_postdesk, tmp_path)
    ticket_id = question['TicketId']
    response = reply(run_postdesk, ticket_id, '--text', 'It left our warehouse today.', '--leave-open')

    assert set(response) == RESPONSE_KEYS
    assert response['errors'] == [] and response['errorDetails'] == []
    assert response['row']['id'] == str(question['InteractionId'])
    reply_id = int(response['response']['row']['id'])
    assert reply_id != question['InteractionId']
    details = response['details']
    assert details['subjectRef'] == 'Re: [ref#: %d-%d]' % (ticket_id, reply_id)
    assert details['responseSubject'] == 'Order 1001 has not arrived'
    assert response['response']['row']['subject'] == 'Re: [ref#: %d-%d] Order 1001 has not arrived' % (
        ticket_id, reply_id)
    assert 'It left our warehouse today.' in details['responseFinalHtml']
    assert '<blockquote' in details['responseFinalHtml']
    plain = details['responseFinalPlain'].splitlines()
    assert any(line.startswith('It left our warehouse today.') for line in plain)
    quoted = [line for line in plain if line.startswith('> ')]
    assert any('my order has not arrived.' in line for line in quoted), plain
    assert not any('my order has not arrived.' in line for line in plain if not line.startswith('> '))
    assert response['response']['row']['status'] == 'Unsent'
    assert [a['statusName'] for a in response['response']['details']['statusAudit']] == ['Unsent', 'Open']
    entity = show(run_postdesk, ticket_id)
    assert (entity['BaseStatus'], entity['Status'], entity['NumReplies']) == ('Active', 'Open', 1)
    [outbound] = [m for m in entity['Messages'] if m['Direction'] == 'outbound']
    assert (outbound['TicketMessageId'], outbound['Status']) == (reply_id, 'Unsent')


def test_reply_without_leave_open_closes_the_ticket(run_postdesk, tmp_path):
    add_mailbox(run_postdesk)
    ticket_id = new_ticket(run_postdesk, tmp_path)['TicketId']
    reply(run_postdesk, ticket_id, '--text', 'Done, closing.')
    entity = show(run_postdesk, ticket_id)
    assert (entity['BaseStatus'], entity['Status']) == ('Closed', 'Closed')
    assert entity['ClosedAt'] is not None and entity['NumReplies'] == 1


def test_expect_reply_waits_for_customer_until_the_customer_answers(run_postdesk, tmp_path, conn):
    add_mailbox(run_postdesk)
    ticket_id = new_ticket(run_postdesk, tmp_path)['TicketId']
    response = reply(run_postdesk, ticket_id, '--text', 'Which address?', '--leave-open', '--expect-reply')
    entity = show(run_postdesk, ticket_id)
    assert (entity['BaseStatus'], entity['Status']) == ('Active', 'Waiting for customer')

    message_id = conn.execute('SELECT message_id FROM interaction WHERE interaction_id = %s',
                              (int(response['response']['row']['id']),)).fetchone()[0]
    [answer] = replay(run_postdesk, tmp_path, make_message(
        subject='Re: Order 1001 has not arrived', message_id='<a1@customer.example>',
        in_reply_to='<%s>' % message_id, body='Berlin, Hauptstrasse 1.\n'))
    assert (answer['Outcome'], answer['TicketId']) == ('followup', ticket_id)
    entity = show(run_postdesk, ticket_id)
    assert (entity['BaseStatus'], entity['Status']) == ('Active', 'Open')


# ------------------------------------------------------------------------------------------------- subjects

def test_no_subject_ref_gives_plain_re_subject_in_response_and_message(run_postdesk, tmp_path, conn):
    add_mailbox(run_postdesk)
    ticket_id = new_ticket(run_postdesk, tmp_path, subject='bare')['TicketId']
    response = reply(run_postdesk, ticket_id, '--text', 'Hello', '--leave-open', '--no-subject-ref')
    assert response['response']['row']['subject'] == 'Re: bare'
    assert '[ref#' not in response['details']['subjectRef']
    [row] = outbox_rows(conn)
    assert mime(row[4])['Subject'] == 'Re: bare'


def test_stacked_prefixes_and_old_reference_give_one_tag_and_one_re(run_postdesk, tmp_path, conn):
    add_mailbox(run_postdesk)
    ticket_id = new_ticket(run_postdesk, tmp_path, subject='RE: AW: [ref#: 3-9] Fwd: Re: question')['TicketId']
    response = reply(run_postdesk, ticket_id, '--text', 'Answer', '--leave-open')
    reply_id = int(response['response']['row']['id'])
    expected = 'Re: [ref#: %d-%d] question' % (ticket_id, reply_id)
    assert response['response']['row']['subject'] == expected
    assert response['details']['responseSubject'] == 'question'
    [row] = outbox_rows(conn)
    sent_subject = mime(row[4])['Subject']
    assert sent_subject == expected
    assert sent_subject.count('[ref#') == 1 and sent_subject.lower().count('re:') == 1


# ---------------------------------------------------------------------------------------- body, recipients

def test_html_reply_is_sanitised_and_keeps_the_agents_remote_image(run_postdesk, tmp_path, conn):
    add_mailbox(run_postdesk)
    ticket_id = new_ticket(run_postdesk, tmp_path)['TicketId']
    answer = tmp_path / 'answer.html'
    answer.write_text('<p onclick="steal()">Your parcel is on its way.</p>'
                      '<script>document.location="https://evil.example/"</script>'
                      '<img src="https://cdn.agent.example/tracking-map.png" alt="map">', encoding='utf-8')
    response = reply(run_postdesk, ticket_id, '--html', str(answer), '--leave-open')
    final_html = response['details']['responseFinalHtml']
    [row] = outbox_rows(conn)
    sent_html = html_part(mime(row[4]))
    for html in (final_html, sent_html):
        assert 'Your parcel is on its way.' in html
        assert '<script' not in html.lower() and 'evil.example' not in html
        assert 'onclick' not in html.lower() and 'steal()' not in html
        assert 'src="https://cdn.agent.example/tracking-map.png"' in html


def test_bcc_is_an_envelope_recipient_but_never_a_header(run_postdesk, tmp_path, conn):
    add_mailbox(run_postdesk)
    ticket_id = new_ticket(run_postdesk, tmp_path)['TicketId']
    reply(run_postdesk, ticket_id, '--text', 'See you', '--leave-open', '--to', 'Bob Brown <bob@customer.example>',
          '--cc', 'carol@customer.example', '--bcc', 'audit@helpdesk-archive.example')
    [row] = outbox_rows(conn)
    assert sorted(row[3]) == ['audit@helpdesk-archive.example', 'bob@customer.example', 'carol@customer.example']
    message = mime(row[4])
    assert message['To'] == 'Bob Brown <bob@customer.example>'
    assert message['Cc'] == 'carol@customer.example'
    assert message['Bcc'] is None
    assert b'audit@helpdesk-archive.example' not in header_block(row[4])
    assert b'audit@helpdesk-archive.example' not in bytes(row[4])
    assert CUSTOMER.encode() not in header_block(row[4])       # --to replaces the default recipient


def test_attached_file_makes_multipart_mixed_with_the_file(run_postdesk, tmp_path, conn):
    add_mailbox(run_postdesk)
    ticket_id = new_ticket(run_postdesk, tmp_path)['TicketId']
    invoice = tmp_path / 'invoice-1001.pdf'
    content = b'%PDF-1.4\n' + bytes(range(256)) * 8 + b'\n%%EOF\n'
    invoice.write_bytes(content)
    response = reply(run_postdesk, ticket_id, '--text', 'Invoice attached.', '--leave-open', '--attach',
                     str(invoice))
    [row] = outbox_rows(conn)
    assert mime(row[4]).get_content_type() == 'multipart/mixed'
    parsed = parse_message(bytes(row[4]))
    [attachment] = parsed.attachments
    assert (attachment.filename, attachment.content_type, attachment.data) == (
        'invoice-1001.pdf', 'application/pdf', content)
    assert 'Invoice attached.' in parsed.text
    assert [a['name'] for a in response['response']['details']['attachments']] == ['invoice-1001.pdf']


# ---------------------------------------------------------------------------------------------------- errors

def test_reply_to_missing_ticket_exits_2_with_errors_and_queues_nothing(run_postdesk, tmp_path, conn):
    add_mailbox(run_postdesk)
    new_ticket(run_postdesk, tmp_path)
    result = run_postdesk('reply', '999', '--text', 'Hello', '--json')
    assert result.returncode == 2
    [response] = lines(result.stdout)
    assert set(response) == RESPONSE_KEYS
    assert response['errors'] and '999' in response['errors'][0]
    plain = run_postdesk('reply', '999', '--text', 'Hello')
    assert plain.returncode == 2 and 'no ticket 999' in plain.stderr
    assert conn.execute('SELECT count(*) FROM outbox').fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM interaction WHERE direction = 'outbound'").fetchone()[0] == 0


# ------------------------------------------------------------------------------------------- transactionality

def test_reply_stores_interaction_audit_and_outbox_row_together(run_postdesk, tmp_path, conn):
    add_mailbox(run_postdesk)
    ticket_id = new_ticket(run_postdesk, tmp_path)['TicketId']

    refused = run_postdesk('reply', str(ticket_id), '--text', 'Hi', '--leave-open', '--cc', 'not an address')
    assert refused.returncode == 2
    counts = ("SELECT (SELECT count(*) FROM interaction WHERE direction = 'outbound'), "
              "       (SELECT count(*) FROM status_audit WHERE target = 'interaction' AND status_after = 'Unsent'), "
              '       (SELECT count(*) FROM outbox), (SELECT num_replies FROM ticket WHERE ticket_id = %s)')
    assert conn.execute(counts, (ticket_id,)).fetchone() == (0, 0, 0, 0)

    response = reply(run_postdesk, ticket_id, '--text', 'Hi', '--leave-open')
    reply_id = int(response['response']['row']['id'])
    assert conn.execute(counts, (ticket_id,)).fetchone() == (1, 1, 1, 1)
    linked = conn.execute(
        'SELECT i.interaction_id, i.status, o.state, o.message_id = i.message_id, a.status_before, a.status_after '
        'FROM interaction i JOIN outbox o USING (interaction_id) '
        "JOIN status_audit a ON a.interaction_id = i.interaction_id AND a.target = 'interaction' "
        "WHERE i.direction = 'outbound'").fetchall()
    assert linked == [(reply_id, 'Unsent', 'queued', True, None, 'Unsent')]
    assert conn.execute('SELECT xmin FROM interaction WHERE interaction_id = %s', (reply_id,)).fetchone() == \
        conn.execute('SELECT xmin FROM outbox WHERE interaction_id = %s', (reply_id,)).fetchone()


# -------------------------------------------------------------------------------------- acknowledgements

def enable_acks(run_postdesk, address: str = MAILBOX) -> None:
    result = run_postdesk('mailbox', 'ack', address, '--default')
    assert result.returncode == 0, result.stderr


def test_new_ticket_gets_one_acknowledgement_with_its_reference(run_postdesk, tmp_path, conn):
    add_mailbox(run_postdesk)
    enable_acks(run_postdesk)
    ticket_id = new_ticket(run_postdesk, tmp_path)['TicketId']
    [ack] = outbox_rows(conn)
    assert (ack[2], ack[5], list(ack[3])) == (ticket_id, 'ack', [CUSTOMER])
    message = mime(ack[4])
    assert message['Auto-Submitted'] == 'auto-replied'
    assert message['X-Auto-Response-Suppress'] == 'All'
    assert ('[ref#: %d-' % ticket_id) in message['Subject']
    assert message['From'].addresses[0].addr_spec == MAILBOX
    assert str(ticket_id) in message.get_body(preferencelist=('plain',)).get_content()


def test_mailbox_without_ack_sends_no_acknowledgement(run_postdesk, tmp_path, conn):
    add_mailbox(run_postdesk)
    new_ticket(run_postdesk, tmp_path)
    assert outbox_rows(conn) == []


NOT_ACKNOWLEDGED = {
    'auto-submitted': make_message(sender='Out of Office <ooo@customer.example>', message_id='<ooo@c.example>',
                                   headers={'Auto-Submitted': 'auto-replied'}),
    'precedence-bulk': make_message(sender='news@shop.example', message_id='<bulk@shop.example>',
                                    headers={'Precedence': 'bulk'}),
    'list-id': make_message(sender='list@lists.example', message_id='<list@lists.example>',
                            headers={'List-Id': 'Customers <customers.lists.example>'}),
    'own-address': make_message(sender='Support <%s>' % MAILBOX, message_id='<own@helpdesk.example>'),
}


def test_automatic_list_and_own_mail_gets_no_acknowledgement(run_postdesk, tmp_path, conn):
    add_mailbox(run_postdesk)
    enable_acks(run_postdesk)
    outcomes = replay(run_postdesk, tmp_path, *NOT_ACKNOWLEDGED.values())
    assert [o['Outcome'] for o in outcomes] == ['new'] * len(NOT_ACKNOWLEDGED)
    assert outbox_rows(conn) == [], list(NOT_ACKNOWLEDGED)
    new_ticket(run_postdesk, tmp_path)                       # acknowledgements do work in this mailbox
    assert [(r[5], list(r[3])) for r in outbox_rows(conn)] == [('ack', [CUSTOMER])]


def test_followups_and_delivery_reports_get_no_acknowledgement(run_postdesk, tmp_path, conn):
    add_mailbox(run_postdesk)
    enable_acks(run_postdesk)
    ticket_id = new_ticket(run_postdesk, tmp_path)['TicketId']
    [ack] = outbox_rows(conn)
    followup, report = replay(
        run_postdesk, tmp_path,
        make_message(subject='Re: Order 1001 has not arrived', message_id='<q2@customer.example>',
                     in_reply_to='<q1@customer.example>', body='Any news?\n'),
        make_bounce(ack[6]))
    assert (followup['Outcome'], followup['TicketId']) == ('followup', ticket_id)
    assert (report['Outcome'], report['TicketId'], report['ThreadRule']) == ('followup', ticket_id, 'bounce')
    assert [r[0] for r in outbox_rows(conn)] == [ack[0]]


def test_acknowledgements_are_limited_to_ten_per_recipient_per_hour(run_postdesk, tmp_path, conn):
    add_mailbox(run_postdesk)
    enable_acks(run_postdesk)
    questions = [make_message(subject='Question %d' % n, message_id='<q%d@customer.example>' % n,
                              body='Question number %d\n' % n) for n in range(12)]
    first = replay(run_postdesk, tmp_path, *questions[:7])          # counted within one batch
    second = replay(run_postdesk, tmp_path, *questions[7:])         # and against the outbox
    assert [o['Outcome'] for o in first + second] == ['new'] * 12
    acks = outbox_rows(conn, 'ack')
    assert len(acks) == 10
    assert {a[2] for a in acks} == {o['TicketId'] for o in first + second[:3]}
    new_ticket(run_postdesk, tmp_path, sender='bob@customer.example', message_id='<b1@customer.example>')
    assert [list(a[3]) for a in outbox_rows(conn, 'ack')][-1] == ['bob@customer.example']


# ------------------------------------------------------------------------------------------------- bounces

def test_delivery_report_about_our_reply_marks_it_failed_and_flags_the_ticket(run_postdesk, tmp_path, conn):
    add_mailbox(run_postdesk)
    ticket_id = new_ticket(run_postdesk, tmp_path)['TicketId']
    response = reply(run_postdesk, ticket_id, '--text', 'Here you are.', '--leave-open')
    reply_id = int(response['response']['row']['id'])
    [row] = outbox_rows(conn)
    assert show(run_postdesk, ticket_id)['Flagged'] is None

    [report] = replay(run_postdesk, tmp_path, make_bounce(row[6]))
    assert (report['Outcome'], report['TicketId'], report['ThreadRule']) == ('followup', ticket_id, 'bounce')
    assert conn.execute('SELECT status FROM interaction WHERE interaction_id = %s', (reply_id,)).fetchone() == \
        ('Failed',)
    audits = conn.execute('SELECT status_before, status_after, action FROM status_audit '
                          "WHERE interaction_id = %s AND target = 'interaction' ORDER BY audit_id",
                          (reply_id,)).fetchall()
    assert audits[-1][:2] == ('Unsent', 'Failed') and '5.1.1' in audits[-1][2]
    entity = show(run_postdesk, ticket_id)
    assert entity['Flagged'] and str(reply_id) in entity['Flagged']
    [outbound] = [m for m in entity['Messages'] if m['TicketMessageId'] == reply_id]
    assert outbound['Status'] == 'Failed'
    assert [m['Type'] for m in entity['Messages']] == ['Customer Email', 'Agent Email', 'Bounce']


# -------------------------------------------------- delayed reports, answered tickets, failed acknowledgements

def test_a_delayed_delivery_report_about_our_reply_changes_nothing(run_postdesk, tmp_path, conn):
    add_mailbox(run_postdesk)
    ticket_id = new_ticket(run_postdesk, tmp_path)['TicketId']
    reply_id = int(reply(run_postdesk, ticket_id, '--text', 'Here you are.', '--leave-open')['response']['row']['id'])
    [row] = outbox_rows(conn)
    delayed = make_bounce(row[6]).replace(b'Action: failed\r\nStatus: 5.1.1', b'Action: delayed\r\nStatus: 4.4.7')
    [report] = replay(run_postdesk, tmp_path, delayed)
    assert (report['Outcome'], report['TicketId']) == ('followup', ticket_id)
    assert conn.execute('SELECT status FROM interaction WHERE interaction_id = %s', (reply_id,)).fetchone() == \
        ('Unsent',)
    assert show(run_postdesk, ticket_id)['Flagged'] is None


def test_customer_answer_to_a_waiting_ticket_is_audited(run_postdesk, tmp_path, conn):
    add_mailbox(run_postdesk)
    ticket_id = new_ticket(run_postdesk, tmp_path)['TicketId']
    reply(run_postdesk, ticket_id, '--text', 'Which address?', '--expect-reply')
    assert show(run_postdesk, ticket_id)['Status'] == 'Waiting for customer', '--expect-reply keeps it open'
    replay(run_postdesk, tmp_path, make_message(subject='Re: Order 1001 has not arrived', body='Berlin.\n',
                                                message_id='<a2@customer.example>',
                                                in_reply_to='<q1@customer.example>'))
    last = conn.execute('SELECT action, status_before, status_after FROM status_audit WHERE ticket_id = %s '
                        "AND target = 'ticket' ORDER BY audit_id DESC LIMIT 1", (ticket_id,)).fetchone()
    assert last == ('Customer answered', 'Waiting for customer', 'Open')


def test_an_acknowledgement_that_cannot_be_made_does_not_cost_the_customers_ticket(run_postdesk, tmp_path, conn):
    """A sender SMTP cannot write to without SMTPUTF8: the ticket opens, only the acknowledgement is skipped."""
    add_mailbox(run_postdesk)
    enable_acks(run_postdesk)
    raw = ('From: J\u00fcrgen <j\u00fcrgen@beispiel.example>\r\nTo: %s\r\nSubject: Frage\r\n'
           'Message-ID: <utf8-local@beispiel.example>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n'
           'Hallo\r\n' % MAILBOX).encode('utf-8')
    outcome, _ = replay(run_postdesk, tmp_path, raw, make_message())
    assert outcome['Outcome'] == 'new'
    assert [list(r[3]) for r in outbox_rows(conn, 'ack')] == [[CUSTOMER]], 'the other message is acknowledged'
    assert conn.execute('SELECT count(*) FROM quarantine').fetchone()[0] == 0


def test_acknowledgements_go_out_with_a_null_return_path(run_postdesk, tmp_path, conn):
    add_mailbox(run_postdesk)
    enable_acks(run_postdesk)
    new_ticket(run_postdesk, tmp_path)
    assert conn.execute("SELECT mail_from FROM outbox WHERE kind = 'ack'").fetchall() == [('',)]


def test_an_ack_template_that_cannot_be_filled_in_is_refused_when_configured(run_postdesk, tmp_path):
    add_mailbox(run_postdesk)
    template = tmp_path / 'ack.txt'
    template.write_text('Hello {name.first}, ticket {ticket_id}.')
    result = run_postdesk('mailbox', 'ack', MAILBOX, '--template', str(template))
    assert result.returncode == 2 and 'template' in result.stderr
