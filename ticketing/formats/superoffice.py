"""SuperOffice's JSON: TicketInfo (CreateTicketFromMailData's answer, seed 003; `replay --json`) and TicketEntity
with its messages (SaveTicketEntity's entity, seed 002; `ticket show --json`)."""
from __future__ import annotations

from ..model import MessageSummary, Outcome, TicketRecord
from ..statuses import base_status_name
from .dates import iso


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


def author(name: str, address: str) -> str:
    if name and address:
        return '%s <%s>' % (name, address)
    return name or address


def message_json(message: MessageSummary) -> dict:
    return {'TicketMessageId': message.interaction_id, 'CreatedAt': iso(message.created_at),
            'Author': author(message.from_name, message.from_email), 'Subject': message.subject,
            'MessageId': message.message_id, 'Type': message.type, 'ThreadRule': message.thread_rule,
            'NumAttachments': message.num_attachments, 'Direction': message.direction, 'Status': message.status}


def ticket_entity(ticket: TicketRecord) -> dict:
    return {
        'TicketId': ticket.ticket_id, 'Title': ticket.title, 'CreatedAt': iso(ticket.created_at),
        'LastChanged': iso(ticket.last_changed), 'BaseStatus': base_status_name(ticket.base_status),
        'Status': ticket.status, 'Category': ticket.category, 'Priority': ticket.priority,
        'OwnedBy': {'AssociateId': ticket.owner_id, 'FullName': ticket.owner_name} if ticket.owner_id else None,
        'Person': ({'PersonId': ticket.person_id, 'FullName': ticket.person_name or '', 'Email': ticket.person_email}
                   if ticket.person_id else None),
        'FromAddress': ticket.from_address, 'ConnectId': ticket.connect_id, 'NumMessages': ticket.num_messages,
        'NumReplies': ticket.num_replies, 'HasAttachment': ticket.has_attachment, 'Tags': list(ticket.tags),
        'RepliedAt': iso(ticket.replied_at), 'ClosedAt': iso(ticket.closed_at), 'MailboxId': ticket.mailbox_id,
        'Mailbox': ticket.mailbox_address, 'Flagged': ticket.flagged, 'QueueId': ticket.queue_id,
        'WorkbinId': ticket.workbin_id, 'CustomFields': ticket.custom_fields,
        'Messages': [message_json(m) for m in ticket.messages],
    }


def ticket_list_item(ticket: TicketRecord) -> dict:
    """One line of `ticket list --json`: the entity's summary fields."""
    return {'TicketId': ticket.ticket_id, 'Title': ticket.title, 'BaseStatus': base_status_name(ticket.base_status),
            'Status': ticket.status, 'NumMessages': ticket.num_messages, 'NumReplies': ticket.num_replies,
            'LastChanged': iso(ticket.last_changed), 'FromAddress': ticket.from_address,
            'ConnectId': ticket.connect_id}
