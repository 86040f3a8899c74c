"""Automatic acknowledgements of new tickets (issue 5): which messages get one, and composing it.

A mailbox with an acknowledgement template answers each new ticket with its `[ref#: T-I]` reference, so the
customer's answer threads back. Never to auto-submitted mail (RFC 3834 and the vendor headers, list and bulk mail
included), delivery reports, postdesk's own messages or mail from one of its mailboxes, and at most `ack_per_hour`
per recipient per hour: two autoresponders can never ping-pong. Acknowledgements carry
`Auto-Submitted: auto-replied` (RFC 3834 section 5) and `X-Auto-Response-Suppress: All` (Exchange).
"""
from __future__ import annotations

import datetime
import html
import string
from dataclasses import replace

from ingest import Bounce, ParsedMail
from outbound.compose import ComposedReply, ComposeError, ReplyDraft, compose_reply, is_own_message_id
from outbound.refs import format_ref

from .replies import Answer, Question, ReplyError, TicketForReply, draft_for

TEMPLATE_FIELDS = ('ticket_id', 'ref', 'subject', 'name', 'mailbox_name')
ACK_HEADERS = (('Auto-Submitted', 'auto-replied'), ('X-Auto-Response-Suppress', 'All'))
DEFAULT_TEMPLATE = ('Hello {name},\n\nthank you for your message. We have opened ticket {ticket_id} for it and will '
                    'answer as soon as we can.\nPlease keep {ref} in the subject when you write about it.\n\n'
                    '{mailbox_name}')


class AckError(Exception):
    """The acknowledgement cannot be made (an address SMTP cannot carry, a broken template)."""


def reports_failure(bounce: Bounce) -> bool:
    """Whether a delivery report says the message failed (RFC 3464 Action: failed, or a 5.x.x status), rather
    than that it was delayed, relayed or delivered."""
    action = (bounce.action or '').strip().lower()
    if action:
        return action == 'failed'
    return (bounce.status or '5').strip().startswith('5')


def reason_not_to_acknowledge(parsed: ParsedMail, own_addresses: set[str]) -> str | None:
    """Why this message must not be acknowledged, or None when it may be."""
    if parsed.bounce is not None:
        return 'a delivery report'
    if parsed.auto_submitted is not None:
        return 'automatic mail (%s)' % parsed.auto_submitted
    sender = parsed.from_.email.lower() if parsed.from_ and parsed.from_.email else ''
    if '@' not in sender:
        return 'no sender address'
    if sender in own_addresses or sender.split('@', 1)[0] in ('mailer-daemon', 'postmaster', 'noreply',
                                                              'no-reply', 'donotreply'):
        return 'sent by a mailbox or a system address'
    if is_own_message_id(parsed.message_id) or any(is_own_message_id(m) for m in parsed.in_reply_to):
        return "postdesk's own message"
    return None


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return '{%s}' % key


def render_template(template: str, values: dict[str, str]) -> str:
    """The acknowledgement's HTML: the template with {ticket_id}, {ref}, {subject}, {name}, {mailbox_name}
    filled in. A template without tags is plain text; values are escaped either way."""
    is_html = '<' in template and '>' in template
    escaped = _Blank({key: html.escape(value) for key, value in values.items()})
    source = template if is_html else html.escape(template, quote=False)
    try:
        filled = string.Formatter().vformat(source, (), escaped)
    except (ValueError, IndexError, KeyError, AttributeError, TypeError) as exc:
        raise AckError('the acknowledgement template cannot be filled in (%s: %s)' % (type(exc).__name__, exc)) \
            from exc
    return filled if is_html else '<div>%s</div>' % filled.replace('\n', '<br>\n')


def check_template(template: str) -> None:
    """Raise AckError now, when a mailbox is configured, for a template that could never be filled in."""
    render_template(template, {key: 'x' for key in TEMPLATE_FIELDS})


def compose_ack(ticket: TicketForReply, question: Question, interaction_id: int, template: str | None,
                zone: datetime.tzinfo) -> tuple[ReplyDraft, ComposedReply]:
    values = {'ticket_id': str(ticket.ticket_id), 'ref': format_ref(ticket.ticket_id, interaction_id),
              'subject': question.subject_bare or ticket.title, 'name': question.from_name or question.from_email,
              'mailbox_name': ticket.mailbox_name or ticket.mailbox_address}
    answer = Answer(ticket_id=ticket.ticket_id, body_html=render_template(template or DEFAULT_TEMPLATE, values),
                    leave_open=True, dest_email=(question.from_email,), agent='postdesk')
    try:
        draft = draft_for(ticket, question, answer, interaction_id, zone, extra_headers=ACK_HEADERS)
        composed = compose_reply(draft)
    except (ComposeError, ReplyError) as exc:
        raise AckError(str(exc)) from exc
    # RFC 3834 3.3: an automatic response goes out with a null return path, so nothing answers it in turn.
    return draft, replace(composed, mail_from='')
