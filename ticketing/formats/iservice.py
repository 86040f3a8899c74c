"""iService's JSON (seed 000): the sendleaveopen response object with the question's `row` and `details`, the
reply's in `response`, and `statusAudit` entries; the same object with `errors` for a request that failed."""
from __future__ import annotations

import datetime
from dataclasses import dataclass

from outbound.compose import ComposedReply

from ..model import AttachmentInfo, AuditEntry, Question, StoredReply, TicketForReply
from ..statuses import AGENT_EMAIL
from .dates import ms_date, utc_z


@dataclass(frozen=True)
class ReplyReport:
    """Everything sendleaveopen's response shows: the ticket, the question answered (None when it has none), the
    composed reply as stored, and the question's status audit."""
    ticket: TicketForReply
    question: Question | None
    composed: ComposedReply
    reply: StoredReply
    question_audit: tuple[AuditEntry, ...]


def response_object(report: ReplyReport) -> dict:
    return {'errors': [], 'errorDetails': [], 'row': question_row(report), 'details': question_details(report),
            'response': reply_part(report)}


def error_object(message: str) -> dict:
    return {'errors': [message], 'errorDetails': [{'message': message}], 'row': None, 'details': None,
            'response': None}


def row(interaction_id: int | None, date: datetime.datetime, subject: str, kind: str, status: str) -> dict:
    return {'id': str(interaction_id) if interaction_id else '', 'date': utc_z(date), 'subject': subject,
            'type': kind, 'tags': [], 'status': status}


def question_row(report: ReplyReport) -> dict:
    ticket, question = report.ticket, report.question
    if question is None:
        return row(None, ticket.created_at, ticket.title, '', ticket.status)
    return row(question.interaction_id, question.date, question.subject, question.type, question.status)


def question_details(report: ReplyReport) -> dict:
    ticket, question, composed = report.ticket, report.question, report.composed
    return {
        'id': str(question.interaction_id) if question else '', 'type': question.type if question else '',
        'tags': [], 'status': question.status if question else '', 'threadID': str(ticket.ticket_id),
        'subject': question.subject if question else ticket.title,
        'subjectBare': question.subject_bare if question else ticket.title,
        'date': utc_z(question.date if question else ticket.created_at),
        'questionHtml': (question.body_html or '') if question else '',
        'bodyPlain': question.body_plain if question else '',
        'customerName': ticket.customer_name,
        'customerAddresses': [ticket.customer_email] if ticket.customer_email else [],
        'fromAddress': question.from_email if question else '', 'headerFrom': question.from_email if question else '',
        'statusAudit': [audit_json(entry) for entry in report.question_audit],
        'subjectRef': composed.subject_ref, 'responseSubject': composed.subject_bare,
        'responseID': str(report.reply.interaction_id), 'responseHtml': composed.final_html,
        'responseFinalHtml': composed.final_html, 'responseFinalPlain': composed.final_plain,
        'toAddress': ', '.join(composed.recipients), 'composerAddress': composed.mail_from,
    }


def reply_part(report: ReplyReport) -> dict:
    composed, reply = report.composed, report.reply
    return {
        'row': row(reply.interaction_id, reply.created_at, composed.subject, AGENT_EMAIL, reply.status),
        'details': {'date': utc_z(reply.created_at), 'type': AGENT_EMAIL, 'tags': [], 'subject': composed.subject,
                    'subjectBare': composed.subject_bare, 'status': reply.status, 'bodyPlain': composed.final_plain,
                    'bodyHtml': composed.final_html, 'note': reply.note, 'messageId': composed.message_id,
                    'attachments': [attachment_json(a) for a in reply.attachments],
                    'statusAudit': [audit_json(entry) for entry in reply.audit]},
    }


def audit_json(entry: AuditEntry) -> dict:
    return {'timeStamp': ms_date(entry.at), 'date': utc_z(entry.at), 'action': entry.action, 'modifierID': None,
            'modifierName': entry.modifier, 'topicID': None, 'topicName': None, 'assignedToID': None,
            'assignedToName': None, 'statusID': None, 'statusName': entry.status_after,
            'statusBefore': entry.status_before}


def attachment_json(attachment: AttachmentInfo) -> dict:
    return {'name': attachment.filename, 'contentType': attachment.content_type, 'size': attachment.size,
            'contentId': attachment.content_id}
