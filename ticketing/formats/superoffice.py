"""SuperOffice's JSON: TicketInfo (CreateTicketFromMailData's answer, seed 003; `replay --json`), TicketEntity
with its messages (SaveTicketEntity's entity, seed 002; `ticket show --json`, `GET /api/v1/Ticket/{id}`), a
page of them, one message (TicketMessageEntity), `$select` and the errors of the HTTP API.

Dates are ISO 8601, in the zone a client named (SO-TimeZone) when it named one. The TicketEntity carries every
key of the seed; those postdesk has no data for are null (or empty), so clients written against SuperOffice
find what they look for.
"""
from __future__ import annotations

import datetime
import html

from ..model import MessageDetail, MessageSummary, Outcome, Tag, TicketPage, TicketRecord
from ..statuses import base_status_name
from .dates import iso, minutes_between

Zone = datetime.tzinfo | None
TICKET_INFO_KEYS = ('TicketId', 'Title', 'OwnerName', 'CategoryName', 'PriorityName', 'TicketUrl', 'PersonName',
                    'ContactName')
# TicketEntity keys of the seed that postdesk has nothing for.
_UNKNOWN_FIELDS = dict.fromkeys((
    'ReadByOwner', 'ReadByCustomer', 'FirstReadByOwner', 'FirstReadByUser', 'Activate', 'AlertTimeout', 'CreatedBy',
    'ReadStatus', 'TimeToReply', 'TimeToClose', 'TimeSpentInternally', 'TimeSpentExternally', 'TimeSpentQueue',
    'RealTimeSpentInternally', 'RealTimeSpentExternally', 'RealTimeSpentQueue', 'TimeSpent', 'Language',
    'Sentiment', 'SentimentConfidence', 'SuggestedCategoryId', 'SuggestedCategoryName', 'OrigHumanCategoryId',
    'IconHint', 'Sale', 'Project', 'FormSubmission', 'TicketType', 'ActiveStatusMonitorId', 'TableRight'))


def ticket_info(outcome: Outcome, ticket_url: str | None) -> dict:
    """TicketInfo's keys, plus InteractionId, Outcome, ThreadRule, Source and Reason."""
    ticket = outcome.ticket
    return {
        'TicketId': ticket.ticket_id if ticket else None,
        'Title': ticket.title if ticket else None,
        'OwnerName': ticket.owner_name if ticket else None,
        'CategoryName': ticket.category if ticket else None,
        'PriorityName': ticket.priority if ticket else None,
        'TicketUrl': ticket_url if ticket else None,
        'PersonName': ticket.person_name if ticket else None,
        'ContactName': ticket.contact_name if ticket else None,
        'InteractionId': outcome.interaction_id,
        'Outcome': outcome.outcome,
        'ThreadRule': outcome.rule,
        'Source': outcome.source,
        'Reason': outcome.reason,
    }


def created_ticket_info(outcome: Outcome, ticket_url: str | None) -> dict:
    """CreateTicketFromMailData's answer: the seed's TicketInfo, then InteractionId, Outcome and ThreadRule."""
    info = ticket_info(outcome, ticket_url)
    shown = {key: info[key] for key in TICKET_INFO_KEYS}
    shown.update(TableRight=None, FieldProperties={}, InteractionId=info['InteractionId'], Outcome=info['Outcome'],
                 ThreadRule=info['ThreadRule'])
    return shown


def author(name: str, address: str) -> str:
    if name and address:
        return '%s <%s>' % (name, address)
    return name or address


def message_json(message: MessageSummary, zone: Zone = None) -> dict:
    """A ticket's message as TicketEntity's Messages list it (seed keys, then postdesk's)."""
    return {'TicketMessageId': message.interaction_id, 'CreatedAt': iso(message.created_at, zone),
            'Slevel': 'External', 'Important': False, 'Author': author(message.from_name, message.from_email),
            'PersonId': message.person_id, 'PersonFullName': message.from_name or None, 'ContactId': None,
            'ContactName': None, 'ContactDepartment': None, 'NumAttachments': message.num_attachments,
            'EmailHeader': message.from_email, 'MessageHeaders': [], 'Language': None, 'Sentiment': None,
            'SentimentConfidence': None, 'CreatedBy': None, 'ChangedAt': iso(message.created_at, zone),
            'Badge': message.type,
            'Subject': message.subject, 'MessageId': message.message_id, 'Type': message.type,
            'ThreadRule': message.thread_rule, 'Direction': message.direction, 'Status': message.status}


def person_json(ticket: TicketRecord) -> dict | None:
    if not ticket.person_id:
        return None
    name = ticket.person_name or ''
    first, _, last = name.rpartition(' ') if ' ' in name else ('', '', name)
    return {'PersonId': ticket.person_id, 'Firstname': first, 'Lastname': last, 'FullName': name,
            'Email': ticket.person_email, 'EmailName': ticket.person_email, 'ContactId': None,
            'ContactName': ticket.person_contact}


def owner_json(ticket: TicketRecord) -> dict | None:
    if not ticket.owner_id:
        return None
    return {'AssociateId': ticket.owner_id, 'FullName': ticket.owner_name}


def tag_json(tag: Tag) -> dict:
    """A tag as the seed's TicketEntity lists it."""
    return {'Id': tag.tag_id, 'Name': tag.name, 'ToolTip': tag.tooltip}


def ticket_entity(ticket: TicketRecord, zone: Zone = None) -> dict:
    first = ticket.messages[0] if ticket.messages else None
    entity = {
        'TicketId': ticket.ticket_id, 'Title': ticket.title, 'CreatedAt': iso(ticket.created_at, zone),
        'LastChanged': iso(ticket.last_changed, zone), 'BaseStatus': base_status_name(ticket.base_status),
        'Status': ticket.status, 'Category': ticket.category, 'Priority': ticket.priority,
        'OwnedBy': owner_json(ticket), 'Person': person_json(ticket), 'FromAddress': ticket.from_address,
        'ConnectId': ticket.connect_id, 'NumMessages': ticket.num_messages, 'NumReplies': ticket.num_replies,
        'HasAttachment': ticket.has_attachment, 'Tags': [tag_json(tag) for tag in ticket.tags],
        'RepliedAt': iso(ticket.replied_at, zone), 'ClosedAt': iso(ticket.closed_at, zone),
        'Deadline': iso(ticket.deadline, zone),
        'MailboxId': ticket.mailbox_id, 'Mailbox': ticket.mailbox_address, 'Flagged': ticket.flagged,
        'QueueId': ticket.queue_id, 'WorkbinId': ticket.workbin_id, 'CustomFields': ticket.custom_fields,
        'ExtraFields': {}, 'Messages': [message_json(m, zone) for m in ticket.messages],
        'Author': author(first.from_name, first.from_email) if first else ticket.from_address,
        'Slevel': 'External', 'Origin': 'Email' if first is not None and first.direction == 'inbound' else 'Api',
        'SecondaryPersons': [], 'AlertLevel': 0,
        'RealTimeToReply': minutes_between(ticket.created_at, ticket.replied_at),
        'RealTimeToClose': minutes_between(ticket.created_at, ticket.closed_at), 'FieldProperties': {},
    }
    entity.update(_UNKNOWN_FIELDS)
    return entity


def ticket_list_item(ticket: TicketRecord) -> dict:
    """One line of `ticket list --json`: the entity's summary fields."""
    return {'TicketId': ticket.ticket_id, 'Title': ticket.title, 'BaseStatus': base_status_name(ticket.base_status),
            'Status': ticket.status, 'NumMessages': ticket.num_messages, 'NumReplies': ticket.num_replies,
            'LastChanged': iso(ticket.last_changed), 'FromAddress': ticket.from_address,
            'ConnectId': ticket.connect_id}


def ticket_page_json(page: TicketPage, top: int, skip: int, zone: Zone = None) -> dict:
    """A page of TicketEntity objects with the number of all that match."""
    return {'total': page.total, 'top': top, 'skip': skip,
            'items': [ticket_entity(ticket, zone) for ticket in page.tickets]}


def body_html(message: MessageDetail) -> str:
    """The message's sanitised HTML body (stored sanitised); plain text made HTML when it has none."""
    return message.body_html or plain_as_html(message.body_plain)


def plain_as_html(text: str) -> str:
    """Plain text as HTML that shows it as it is: escaped, its line breaks kept."""
    return '<div>%s</div>' % html.escape(text).replace('\n', '<br>\n')


def addresses(people) -> str:
    """Stored addresses ([{"name", "email"}]) as a header shows them."""
    return ', '.join(author(p.get('name') or '', p.get('email') or '') for p in people or () if isinstance(p, dict))


def headers_summary(message: MessageDetail, zone: Zone = None) -> list[dict]:
    pairs = (('From', author(message.from_name, message.from_email)), ('To', addresses(message.to_addresses)),
             ('Cc', addresses(message.cc_addresses)), ('Subject', message.subject),
             ('Date', iso(message.sent_date or message.created_at, zone)), ('Message-ID', message.message_id),
             ('In-Reply-To', ' '.join(message.in_reply_to)), ('References', ' '.join(message.references)),
             ('Auto-Submitted', message.auto_submitted or ''))
    return [{'Name': name, 'Value': value} for name, value in pairs if value]


def message_entity(message: MessageDetail, zone: Zone = None) -> dict:
    """One message: its headers summarised, the sanitised HTML body, the plain text, its attachments."""
    base = '/api/v1/TicketMessage/%d' % message.interaction_id
    return {
        'TicketMessageId': message.interaction_id, 'TicketId': message.ticket_id, 'MailboxId': message.mailbox_id,
        'CreatedAt': iso(message.created_at, zone), 'Author': author(message.from_name, message.from_email),
        'EmailHeader': message.from_email, 'PersonId': message.person_id, 'Subject': message.subject,
        'Direction': message.direction, 'Type': message.type, 'Status': message.status, 'Slevel': 'External',
        'MessageId': message.message_id, 'ThreadRule': message.thread_rule,
        'MessageHeaders': headers_summary(message, zone), 'Body': body_html(message),
        'PlainBody': message.body_plain, 'NumAttachments': len(message.attachments),
        'Attachments': [{'AttachmentId': a.number, 'Name': a.filename, 'ContentType': a.content_type,
                         'Size': a.size, 'ContentId': a.content_id, 'Inline': a.inline,
                         'Url': '%s/Attachment/%d' % (base, a.number)} for a in message.attachments],
        'RawUrl': base + '/Raw',
    }


def select_fields(obj: dict, select: str | None) -> dict:
    """`$select=name,department,category/id`: the fields not named are nulled. Names are compared
    case-insensitively; for a path, its first step names the field; `category` also names CategoryName and
    `ticket` TicketId (TicketInfo's fields are the entities' names with Name or Id after them)."""
    if not select or not select.strip():
        return obj
    named = {part.split('/')[0].strip().lower() for part in select.split(',') if part.strip()}
    named |= {name + suffix for name in named for suffix in ('name', 'id')}
    return {key: value if key.lower() in named else None for key, value in obj.items()}


def error_json(status: int, kind: str, message: str, **extra) -> dict:
    """The body of every error the HTTP API answers."""
    return {'Error': message, 'ErrorType': kind, 'Status': status, **extra}
