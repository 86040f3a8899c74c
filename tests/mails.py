"""Small messages for tests, built with the standard library so each test shows exactly what it sends."""
from __future__ import annotations

from email.message import EmailMessage
from email.utils import format_datetime
import datetime

MAILBOX = 'support@helpdesk.example'


def make_message(subject: str = 'Order 1001 has not arrived', sender: str = 'Anna Schmidt <anna@customer.example>',
                 to: str = MAILBOX, message_id: str | None = '<q1@customer.example>',
                 in_reply_to: str | None = None, references: str | None = None,
                 body: str = 'Hello,\nmy order has not arrived.\n', cc: str | None = None,
                 headers: dict | None = None, attachments: list[tuple[str, str, bytes]] = ()) -> bytes:
    msg = EmailMessage()
    msg['From'] = sender
    msg['To'] = to
    if cc:
        msg['Cc'] = cc
    msg['Subject'] = subject
    msg['Date'] = format_datetime(datetime.datetime(2026, 11, 16, 9, 0, tzinfo=datetime.timezone.utc))
    if message_id:
        msg['Message-ID'] = message_id
    if in_reply_to:
        msg['In-Reply-To'] = in_reply_to
    if references:
        msg['References'] = references
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    for filename, content_type, data in attachments:
        maintype, subtype = content_type.split('/')
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return bytes(msg)


def make_bounce(original_message_id: str, recipient: str = 'anna@customer.example',
                to: str = MAILBOX, message_id: str = '<dsn-1@mx.customer.example>') -> bytes:
    """An RFC 3464 delivery status notification about `original_message_id`."""
    return ('From: Mail Delivery System <MAILER-DAEMON@mx.customer.example>\r\n'
            'To: %(to)s\r\nSubject: Undelivered Mail Returned to Sender\r\n'
            'Date: Mon, 16 Nov 2026 10:00:00 +0000\r\nMessage-ID: %(mid)s\r\nAuto-Submitted: auto-replied\r\n'
            'MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary="r"\r\n\r\n'
            '--r\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n\r\n'
            '--r\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.customer.example\r\n\r\n'
            'Final-Recipient: rfc822; %(rcpt)s\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n'
            '--r\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: %(to)s\r\nTo: %(rcpt)s\r\n'
            'Subject: Re: your question\r\nMessage-ID: <%(orig)s>\r\n\r\n--r--\r\n'
            % {'to': to, 'mid': message_id, 'rcpt': recipient, 'orig': original_message_id.strip('<>')}
            ).encode('ascii')
