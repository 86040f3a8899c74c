"""Domain data to an outbound reply draft (`outbound.compose.ReplyDraft`): agents' replies (iService's
sendleaveopen and send, seed 000) and automatic acknowledgements of new tickets.

A draft answers a question (the interaction quoted), goes to the ticket's customer unless other recipients are
given, carries a new Message-ID, the ticket's fixed thread reference and the HTML policy outbound cleans with.
Acknowledgements are filled in from a template with `{ticket_id}`, `{ref}`, `{subject}`, `{name}`,
`{mailbox_name}` and carry `Auto-Submitted: auto-replied` (RFC 3834 section 5) and
`X-Auto-Response-Suppress: All` (Exchange).
"""
from __future__ import annotations

import datetime
import email.utils
import html
import string
import zoneinfo

from ingest.sanitize import html_to_text, sanitize_html, strip_tags
from outbound.compose import ComposeError, HtmlPolicy, Party, Quoted, ReplyDraft, new_message_id
from outbound.refs import format_ref

from .model import Answer, Question, TicketForReply
from .threads import is_derived_message_id, ticket_reference

# Replies are cleaned by the inbound allowlist: what a customer receives is what an inbound message may contain.
HTML_POLICY = HtmlPolicy(sanitize=sanitize_html, to_text=html_to_text, strip_tags=strip_tags)
TEMPLATE_FIELDS = ('ticket_id', 'ref', 'subject', 'name', 'mailbox_name')
ACK_HEADERS = (('Auto-Submitted', 'auto-replied'), ('X-Auto-Response-Suppress', 'All'))
DEFAULT_TEMPLATE = ('Hello {name},\n\nthank you for your message. We have opened ticket {ticket_id} for it and will '
                    'answer as soon as we can.\nPlease keep {ref} in the subject when you write about it.\n\n'
                    '{mailbox_name}')


class ReplyError(Exception):
    """The reply cannot be made: no such ticket, nobody to send it to, a bad address."""


class AckError(Exception):
    """The acknowledgement cannot be made (an address SMTP cannot carry, a broken template)."""


def display_zone(name: str) -> datetime.tzinfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ReplyError('unknown time zone %r in the configuration ([outbound] timezone)' % name) from exc


def quoted_from(question: Question, zone: datetime.tzinfo) -> Quoted:
    return Quoted(date=question.date.astimezone(zone), name=question.from_name, email=question.from_email,
                  html=question.body_html, text=question.body_plain,
                  message_id=None if is_derived_message_id(question.message_id) else question.message_id,
                  references=question.references)


def draft_for(ticket: TicketForReply, question: Question | None, answer: Answer, interaction_id: int,
              zone: datetime.tzinfo, extra_headers: tuple[tuple[str, str], ...] = ()) -> ReplyDraft:
    """The draft of a reply to `question` (None: a ticket with no inbound message), as interaction
    `interaction_id`. Raises ReplyError for recipients that are not addresses."""
    domain = mail_domain(ticket.mailbox_address)
    return ReplyDraft(
        ticket_id=ticket.ticket_id, interaction_id=interaction_id,
        subject=answer.subject or (question.subject if question is not None and question.subject_bare
                                   else ticket.title),
        body_html=answer.body_html, sender=Party(ticket.mailbox_name, ticket.mailbox_address),
        to=recipients_or_customer(answer.dest_email, ticket),
        message_id=new_message_id(ticket.ticket_id, interaction_id, domain),
        ticket_reference=ticket_reference(ticket.ticket_id, ticket.thread_token, domain),
        date=datetime.datetime.now(datetime.timezone.utc), cc=tuple(parties(answer.cc)),
        bcc=tuple(parties(answer.bcc)), quoted=quoted_from(question, zone) if question is not None else None,
        add_subject_ref=answer.add_subject_ref_num and not answer.supress_subject_ref,
        attachments=answer.attachments, extra_headers=extra_headers, thread_started=ticket.created_at,
        html_policy=HTML_POLICY)


def recipients_or_customer(addresses: tuple[str, ...], ticket: TicketForReply) -> tuple[Party, ...]:
    if addresses:
        return tuple(parties(addresses))
    if not ticket.customer_email:
        raise ReplyError('ticket %d has no customer address; give one with --to' % ticket.ticket_id)
    return (Party(ticket.customer_name if ticket.customer_name != ticket.customer_email else '',
                  ticket.customer_email),)


def parties(addresses: tuple[str, ...]) -> list[Party]:
    """The recipients an agent named (each text one address or a comma-separated list). A control character
    anywhere is refused before parsing: a line break would let one "address" name more recipients (an injected
    `Bcc:`), as the parser reads what follows it as another address. Raises ReplyError."""
    for text in addresses:
        if any(ord(c) < 32 or ord(c) == 127 for c in text):
            raise ReplyError('not an e-mail address: %r (it holds a control character)' % text)
    found = []
    for name, address in email.utils.getaddresses(list(addresses)):
        local, at, domain = address.rpartition('@')
        if not (local and at and domain) or any(c in address for c in ' <>,;:"()[]\\'):
            raise ReplyError('not an e-mail address: %r' % address)
        found.append(Party(name, address))
    return found


def mail_domain(address: str) -> str:
    """The domain of a mailbox's address, for the Message-IDs of what it sends."""
    return address.rpartition('@')[2].lower() or 'postdesk.invalid'


# ------------------------------------------------------------------------------------------ acknowledgements

class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return '{%s}' % key


def render_template(template: str, values: dict[str, str]) -> str:
    """The acknowledgement's HTML: the template with its fields filled in. A template without tags is plain
    text; values are escaped either way."""
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


def ack_draft(ticket: TicketForReply, question: Question, interaction_id: int, template: str | None,
              zone: datetime.tzinfo) -> ReplyDraft:
    """The acknowledgement of a new ticket, to the sender of its first message, with the reference to keep."""
    values = {'ticket_id': str(ticket.ticket_id), 'ref': format_ref(ticket.ticket_id, interaction_id),
              'subject': question.subject_bare or ticket.title, 'name': question.from_name or question.from_email,
              'mailbox_name': ticket.mailbox_name or ticket.mailbox_address}
    answer = Answer(ticket_id=ticket.ticket_id, body_html=render_template(template or DEFAULT_TEMPLATE, values),
                    leave_open=True, dest_email=(question.from_email,))
    try:
        return draft_for(ticket, question, answer, interaction_id, zone, extra_headers=ACK_HEADERS)
    except (ReplyError, ComposeError) as exc:
        raise AckError(str(exc)) from exc
