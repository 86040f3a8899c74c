"""iService's JSON (seed 000): the sendleaveopen response object with the question's `row` and `details`, the
reply's in `response`, `statusAudit` entries and `caseProperties` (the ticket's thread properties); the same
object with `errors` for a request that failed. Every level has exactly the keys of the seed's response example;
`postdesk reply --json` and `POST /webapp-api-mq-myqueue` both answer with this object.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass

from outbound.compose import ComposedReply

from ..model import AttachmentInfo, AuditEntry, CaseContext, Question, StoredReply, TicketForReply
from ..statuses import AGENT_EMAIL
from .dates import ms_date, utc_z
from .superoffice import addresses, plain_as_html

NO_DATE = datetime.datetime(1, 1, 1, tzinfo=datetime.timezone.utc)      # .NET's MinValue: the seed's "no date"


@dataclass(frozen=True)
class ReplyReport:
    """Everything sendleaveopen's response shows: the ticket, the question answered (None when it has none), the
    composed reply as stored, the question's status audit, and the ticket's case context."""
    ticket: TicketForReply
    question: Question | None
    composed: ComposedReply
    reply: StoredReply
    question_audit: tuple[AuditEntry, ...]
    case: CaseContext = CaseContext()
    question_attachments: tuple[AttachmentInfo, ...] = ()
    agent: str = ''                     # who replied: the resolver, when the reply closed the ticket


def response_object(report: ReplyReport) -> dict:
    return {'errors': [], 'errorDetails': [], 'numCanGet': 0, 'numCanApprove': 0, 'row': question_row(report),
            'details': question_details(report), 'response': reply_part(report)}


def error_object(message: str) -> dict:
    return {'errors': [message], 'errorDetails': [{'message': message}], 'numCanGet': 0, 'numCanApprove': 0,
            'row': None, 'details': None, 'response': None}


def row(interaction_id: int | None, date: datetime.datetime, subject: str, kind: str, status: str,
        case: CaseContext, segment_id: int, assigned: bool = True) -> dict:
    return {'id': str(interaction_id) if interaction_id else '', 'date': utc_z(date), 'subject': subject,
            'type': kind, 'tags': [], 'assignedToID': str(case.owner_id) if assigned and case.owner_id else '',
            'status': status, 'topicID': '', 'topicName': case.category, 'segmentID': str(segment_id),
            'properties': []}


def question_row(report: ReplyReport) -> dict:
    ticket, question, case = report.ticket, report.question, report.case
    if question is None:
        return row(None, ticket.created_at, ticket.title, '', ticket.status, case, ticket.mailbox_id)
    return row(question.interaction_id, question.date, question.subject, question.type, question.status, case,
               ticket.mailbox_id)


def case_properties(report: ReplyReport) -> list[dict]:
    """The ticket's thread properties as iService's caseProperties: one group, named for the mailbox."""
    if not report.case.thread_properties:
        return []
    return [{'name': report.ticket.mailbox_name or report.ticket.mailbox_address,
             'properties': [property_json(p) for p in report.case.thread_properties],
             'logins': None, 'canModifyLogins': False}]


def property_json(prop: dict) -> dict:
    """A kept thread property as caseProperties show it (values that are not a list, as a client may have saved
    them through CustomFields, show as one value)."""
    values = prop.get('values')
    values = values if isinstance(values, list) else [] if values is None else [values]
    return {'propertyID': str(prop.get('propertyID') or ''), 'name': prop.get('propertyName') or '',
            'isDate': False, 'isDatetime': False, 'isInteger': False, 'isNumber': False,
            'allowMultiple': len(values) > 1, 'hasDescriptions': False, 'isMultiLine': False, 'isReadOnly': False,
            'isRequired': False, 'values': [value_json(v) for v in values], 'valueChoices': [],
            'descriptionChoices': []}


def value_json(value) -> dict:
    text = value.get('value') if isinstance(value, dict) else value
    return {'description': value.get('description') if isinstance(value, dict) else None,
            'value': None if text is None else str(text), 'valueDate': None, 'valueDatetime': None,
            'valueInt': None, 'valueNumber': None}


def segment(report: ReplyReport) -> dict:
    ticket, case = report.ticket, report.case
    return {'topicID': '', 'topicName': case.category, 'segmentID': str(ticket.mailbox_id),
            'segmentName': ticket.mailbox_name or ticket.mailbox_address}


def question_details(report: ReplyReport) -> dict:
    ticket, question, composed, case = report.ticket, report.question, report.composed, report.case
    sender = question.from_email if question else ''
    details = {
        'id': str(question.interaction_id) if question else '', 'type': question.type if question else '',
        'tags': [], 'status': question.status if question else '', 'threadID': str(ticket.ticket_id),
        'threadType': question.type if question else '', 'caseProperties': case_properties(report),
        'subject': question.subject if question else ticket.title,
        'subjectBare': question.subject_bare if question else ticket.title,
        'date': utc_z(question.date if question else ticket.created_at),
        'dateResolved': utc_z(report.reply.created_at if report.reply.closed_ticket else NO_DATE),
        'questionHtml': question_html(question),
        'attachments': [attachment_json(a) for a in report.question_attachments],
        'interactionProperties': [], 'customerID': str(ticket.customer_id) if ticket.customer_id else '',
        'customerName': ticket.customer_name,
        'statusAudit': [audit_json(entry, report) for entry in report.question_audit],
        'customerAddresses': [ticket.customer_email] if ticket.customer_email else [],
        'customerLogins': [{'name': ticket.customer_email, 'type': 'Email'}] if ticket.customer_email else [],
        'fromAddress': sender, 'composerAddress': composed.mail_from, 'reCC': '', **segment(report),
        'responseID': str(report.reply.interaction_id), 'subjectRef': composed.subject_ref,
        'responseSubject': composed.subject_bare, 'responseHtml': composed.final_html, 'note': report.reply.note,
        'responseProperties': [], 'responseAttachments': [attachment_json(a) for a in report.reply.attachments],
        'assignedToID': str(case.owner_id) if case.owner_id else '', 'assignedToName': case.owner_name or '',
        'resolvedByName': report.agent if report.reply.closed_ticket else '',
        'toAddress': ', '.join(composed.recipients), 'headerFrom': sender,
        'headerTo': addresses(question.to_addresses) if question else '', 'cc': '', 'bcc': '',
        'bodyPlain': question.body_plain if question else '',
        'defaultMailboxID': str(ticket.mailbox_id), 'responseFinalHtml': composed.final_html,
        'responseFinalPlain': composed.final_plain,
    }
    return details


def question_html(question: Question | None) -> str:
    """The question's text as HTML: its sanitised HTML, else its plain text made HTML."""
    if question is None:
        return ''
    return question.body_html or plain_as_html(question.body_plain)


def reply_part(report: ReplyReport) -> dict:
    composed, reply, case = report.composed, report.reply, report.case
    return {
        'row': row(reply.interaction_id, reply.created_at, composed.subject, AGENT_EMAIL, reply.status, case,
                   report.ticket.mailbox_id, assigned=False),
        'details': {'date': utc_z(reply.created_at), 'type': AGENT_EMAIL, 'tags': [], 'subject': composed.subject,
                    'subjectBare': composed.subject_bare, 'status': reply.status, 'bodyPlain': composed.final_plain,
                    'bodyHtml': composed.final_html, 'note': reply.note, 'interactionProperties': [],
                    'caseProperties': case_properties(report),
                    'attachments': [attachment_json(a) for a in reply.attachments],
                    'statusAudit': [audit_json(entry, report) for entry in reply.audit], **segment(report),
                    'assignedToID': '', 'operatorName': case.owner_name or ''},
    }


def audit_json(entry: AuditEntry, report: ReplyReport) -> dict:
    return {'timeStamp': ms_date(entry.at), 'date': utc_z(entry.at), 'action': entry.action,
            'modifierID': modifier_id(entry, report.ticket), 'modifierName': entry.modifier,
            'topicID': '', 'topicName': report.case.category, 'assignedToID': None, 'assignedToName': None,
            'statusID': None, 'statusName': entry.status_after}


def modifier_id(entry: AuditEntry, ticket: TicketForReply) -> str | None:
    """Who made the change, as iService's contact id: the agent's id, the customer's (a message the customer
    sent), else None (postdesk itself)."""
    if entry.modifier_id:
        return str(entry.modifier_id)
    if ticket.customer_id and ticket.customer_email and entry.modifier.lower() == ticket.customer_email.lower():
        return str(ticket.customer_id)
    return None


def attachment_json(attachment: AttachmentInfo) -> dict:
    return {'name': attachment.filename, 'contentType': attachment.content_type, 'size': attachment.size,
            'contentId': attachment.content_id}
