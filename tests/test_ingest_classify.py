"""Mail a helpdesk must not answer: auto-submitted mail (RFC 3834 and vendor headers) and bounces (RFC 3464 and
the MAILER-DAEMON texts that predate it)."""
from __future__ import annotations

import pytest

from ingest import Bounce, parse_message


def message(*header_lines: bytes, body: bytes = b'Hello, I have a question about my order.\n') -> bytes:
    base = (b'From: Customer <customer@example.com>', b'To: help@example.org', b'Subject: Question',
            b'Message-ID: <q1@example.com>', b'Date: Tue, 3 Jun 2025 10:04:05 +0200')
    return b'\n'.join(base + header_lines) + b'\n\n' + body


# ------------------------------------------------------------------------------------------ auto-submitted

@pytest.mark.parametrize('header, reason', [
    (b'Auto-Submitted: auto-replied', 'Auto-Submitted: auto-replied'),
    (b'Auto-Submitted: auto-generated', 'Auto-Submitted: auto-generated'),
    (b'Precedence: bulk', 'Precedence: bulk'),
    (b'Precedence: junk', 'Precedence: junk'),
    (b'Precedence: list', 'Precedence: list'),
    (b'Precedence: auto_reply', 'Precedence: auto_reply'),
    (b'X-Autoreply: yes', 'X-Autoreply: yes'),
    (b'X-Autorespond: yes', 'X-Autorespond: yes'),
    (b'X-Auto-Response-Suppress: All', 'X-Auto-Response-Suppress: All'),
    (b'X-AutoReply-From: robot@example.com', 'X-AutoReply-From: robot@example.com'),
    (b'X-Mail-Autoreply: yes', 'X-Mail-Autoreply: yes'),
    (b'List-Id: Announcements <announce.example.com>', 'List-Id'),
    (b'List-Unsubscribe: <mailto:unsubscribe@example.com>', 'List-Unsubscribe'),
    (b'Return-Path: <>', 'Return-Path: <>'),
])
def test_auto_submitted_reason_names_the_trigger(header, reason):
    assert parse_message(message(header)).auto_submitted == reason


def test_precedence_value_case_does_not_matter():
    assert parse_message(message(b'Precedence: Bulk')).auto_submitted == 'Precedence: Bulk'


def test_auto_submitted_no_is_not_automatic():
    assert parse_message(message(b'Auto-Submitted: no')).auto_submitted is None
    assert parse_message(message(b'Auto-Submitted: No')).auto_submitted is None


def test_auto_submitted_no_with_comment_is_not_automatic():
    assert parse_message(message(b'Auto-Submitted: no (sent by a person)')).auto_submitted is None


def test_normal_precedence_and_return_path_are_not_automatic():
    assert parse_message(message(b'Precedence: first-class', b'Return-Path: <customer@example.com>')).auto_submitted is None


def test_normal_message_is_not_automatic():
    mail = parse_message(message())
    assert mail.auto_submitted is None
    assert mail.bounce is None


# ------------------------------------------------------------------------------------------ RFC 3464

DSN = b'''From: MAILER-DAEMON@mx.example.org (Mail Delivery System)
To: help@example.org
Subject: Undelivered Mail Returned to Sender
Date: Tue, 3 Jun 2025 10:04:05 +0200
Message-ID: <bounce1@mx.example.org>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="RPT"

--RPT
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.org.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<nobody@example.net>: host mx.example.net said: 550 5.1.1 User unknown

--RPT
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org
Arrival-Date: Tue,  3 Jun 2025 10:04:01 +0200

Final-Recipient: rfc822; nobody@example.net
Original-Recipient: rfc822;nobody@example.net
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.example.net
Diagnostic-Code: smtp; 550 5.1.1 User unknown

--RPT
Content-Description: Undelivered Message
Content-Type: message/rfc822

From: help@example.org
To: nobody@example.net
Subject: Re: Your ticket
Message-ID: <reply-123@example.org>
Date: Tue, 3 Jun 2025 10:04:00 +0200

We answered your ticket.

--RPT--
'''


def test_rfc3464_report_gives_bounce_with_original_id_recipient_action_and_status():
    mail = parse_message(DSN)
    assert mail.bounce == Bounce(original_message_id='reply-123@example.org', recipients=('nobody@example.net',),
                                 action='failed', status='5.1.1')


def test_rfc3464_report_with_only_the_original_headers_gives_the_original_id():
    raw = DSN.replace(b'Content-Type: message/rfc822', b'Content-Type: text/rfc822-headers').replace(
        b'\nWe answered your ticket.\n', b'')
    mail = parse_message(raw)
    assert mail.bounce == Bounce(original_message_id='reply-123@example.org', recipients=('nobody@example.net',),
                                 action='failed', status='5.1.1')


def test_rfc3464_report_keeps_its_parts_as_attachments_and_its_text_as_body():
    mail = parse_message(DSN)
    assert 'could not' in mail.text and 'be delivered' in mail.text
    assert 'Final-Recipient' not in mail.text
    assert 'We answered your ticket.' not in mail.text
    assert [(a.filename, a.content_type) for a in mail.attachments] == [
        ('delivery-status.txt', 'message/delivery-status'), ('Re: Your ticket.eml', 'message/rfc822')]


def test_rfc3464_report_with_several_recipients_lists_them_all_and_reports_the_failure():
    raw = DSN.replace(b'Final-Recipient: rfc822; nobody@example.net\nOriginal-Recipient: rfc822;nobody@example.net\n'
                      b'Action: failed\nStatus: 5.1.1\n',
                      b'Final-Recipient: rfc822; slow@example.net\nAction: delayed\nStatus: 4.4.1\n\n'
                      b'Final-Recipient: rfc822; nobody@example.net\nAction: failed\nStatus: 5.1.1\n')
    bounce = parse_message(raw).bounce
    assert bounce.recipients == ('slow@example.net', 'nobody@example.net')
    assert (bounce.action, bounce.status) == ('failed', '5.1.1')


def test_rfc3464_delay_report_is_a_delayed_bounce():
    raw = DSN.replace(b'Action: failed\nStatus: 5.1.1', b'Action: delayed\nStatus: 4.4.1')
    bounce = parse_message(raw).bounce
    assert (bounce.action, bounce.status) == ('delayed', '4.4.1')


def test_rfc3464_report_with_crlf_line_endings():
    bounce = parse_message(DSN.replace(b'\n', b'\r\n')).bounce
    assert bounce == Bounce(original_message_id='reply-123@example.org', recipients=('nobody@example.net',),
                            action='failed', status='5.1.1')


# ------------------------------------------------------------------------------------------ MAILER-DAEMON text

EXIM = b'''Return-Path: <>
From: Mail Delivery System <Mailer-Daemon@mx.example.org>
To: help@example.org
Subject: Mail delivery failed: returning message to sender
Message-ID: <E1abc@mx.example.org>
Date: Tue, 3 Jun 2025 10:04:05 +0200

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  someone@example.net
    host mx.example.net [192.0.2.1]
    SMTP error from remote mail server after RCPT TO:<someone@example.net>:
    550 5.1.1 User unknown

------ This is a copy of the message, including all the headers. ------

Return-path: <help@example.org>
Received: from help by mx.example.org
From: help@example.org
To: someone@example.net
Subject: Re: Your ticket
Message-ID: <orig@x>

We answered your ticket.
'''

QMAIL = b'''From: MAILER-DAEMON@mx.example.org
To: help@example.org
Subject: failure notice
Date: 3 Jun 2025 08:04:05 -0000

Hi. This is the qmail-send program at mx.example.org.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<someone@example.net>:
192.0.2.1 does not like recipient.
Remote host said: 550 5.1.1 <someone@example.net>... User unknown
Giving up on 192.0.2.1.

--- Below this line is a copy of the message.

Return-Path: <help@example.org>
Received: (qmail 1234 invoked by uid 0); 3 Jun 2025 08:04:00 -0000
Message-ID: <orig-q@example.org>
From: help@example.org
To: someone@example.net
Subject: Re: Your ticket

We answered your ticket.
'''


def test_exim_plain_text_bounce_gives_recipient_status_and_original_id():
    mail = parse_message(EXIM)
    assert mail.bounce == Bounce(original_message_id='orig@x', recipients=('someone@example.net',),
                                 action='failed', status='5.1.1')


def test_qmail_plain_text_bounce_gives_recipient_status_and_original_id():
    mail = parse_message(QMAIL)
    assert mail.bounce == Bounce(original_message_id='orig-q@example.org', recipients=('someone@example.net',),
                                 action='failed', status='5.1.1')


def test_plain_text_bounce_does_not_list_the_quoted_sender_as_failed():
    for raw in (EXIM, QMAIL):
        assert 'help@example.org' not in parse_message(raw).bounce.recipients


def test_customer_writing_about_a_failed_delivery_is_not_a_bounce():
    raw = message(body=b'My delivery failed: the parcel was returned. Error 550 5.1.1 user unknown?\n'
                       b'Message-ID: <not-a-bounce@example.com>\n')
    mail = parse_message(raw.replace(b'Subject: Question', b'Subject: Undelivered parcel'))
    assert mail.bounce is None
    assert mail.auto_submitted is None


def test_message_from_postmaster_that_is_not_a_bounce_is_not_a_bounce():
    raw = message().replace(b'From: Customer <customer@example.com>', b'From: postmaster@example.com')
    assert parse_message(raw).bounce is None


def test_forwarded_message_in_a_normal_mail_is_not_a_bounce():
    raw = (b'From: customer@example.com\nSubject: Fwd: hello\nContent-Type: multipart/mixed; boundary=B\n\n'
           b'--B\nContent-Type: text/plain\n\nsee below\n--B\nContent-Type: message/rfc822\n\n'
           b'From: x@example.net\nSubject: hello\nMessage-ID: <fwd@example.net>\n\nhi\n--B--\n')
    assert parse_message(raw).bounce is None


def test_nul_in_auto_submitted_and_report_fields_does_not_reach_the_output():
    mail = parse_message(message(b'Auto-Submitted:\x00 auto-replied'))
    assert mail.auto_submitted and '\x00' not in mail.auto_submitted
    bounce = parse_message(DSN.replace(b'Action: failed', b'Action: failed\x00')
                           .replace(b'Final-Recipient: rfc822; nobody', b'Final-Recipient: rfc822; no\x00body')).bounce
    assert bounce.action == 'failed'
    assert all('\x00' not in r for r in bounce.recipients)
