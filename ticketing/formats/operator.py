"""The operator's JSON: mailboxes (`mailbox list --json`), quarantined messages (`quarantine list --json`),
outgoing messages (`outbox list --json`), agents (`agent add|list --json`) and the pipeline's health
(`status --json`, snake_case keys as monitoring checks read them)."""
from __future__ import annotations

from ..model import Agent, HeldMessage, ListenerCheck, Mailbox, OutboxEntry, PipelineFigures
from ..statuses import OUTBOX_QUEUED
from .dates import iso


def mailbox_json(mailbox: Mailbox) -> dict:
    return {'MailboxId': mailbox.mailbox_id, 'Address': mailbox.address, 'Name': mailbox.name,
            'Category': mailbox.category, 'Priority': mailbox.priority, 'FollowUp': mailbox.follow_up,
            'IsDefault': mailbox.is_default, 'CatchAll': mailbox.catch_all,
            'Acknowledges': mailbox.ack_template is not None}


def held_json(held: HeldMessage) -> dict:
    return {'QuarantineId': held.quarantine_id, 'CreatedAt': iso(held.created_at), 'Reason': held.reason,
            'Source': held.source, 'Mailbox': held.mailbox_hint, 'Size': held.size, 'State': held.state}


def outbox_json(entry: OutboxEntry) -> dict:
    return {'OutboxId': entry.outbox_id, 'State': entry.state, 'Kind': entry.kind, 'TicketId': entry.ticket_id,
            'InteractionId': entry.interaction_id, 'To': list(entry.rcpt_to), 'Subject': entry.subject,
            'Attempts': entry.attempts, 'CreatedAt': iso(entry.created_at),
            'NextAttemptAt': iso(entry.next_attempt_at) if entry.state == OUTBOX_QUEUED else None,
            'SentAt': iso(entry.sent_at), 'LastError': entry.last_error, 'RelayReply': entry.relay_reply}


def agent_json(agent: Agent) -> dict:
    return {'AgentId': agent.agent_id, 'Login': agent.login, 'Name': agent.full_name, 'Email': agent.email,
            'Role': agent.role, 'Active': agent.active, 'MailboxIds': list(agent.mailbox_ids)}


def new_agent_json(agent: Agent, token: str) -> dict:
    """What `agent add --json` prints: the token, once."""
    return {'AgentId': agent.agent_id, 'Login': agent.login, 'Role': agent.role, 'Token': token}


def status_json(figures: PipelineFigures | None, listeners: list[ListenerCheck], problems: list[str],
                expected_schema: str | None) -> dict:
    """`postdesk status --json`; without figures, the database was unreachable."""
    known = figures is not None
    return {
        'healthy': not problems, 'problems': problems,
        'database': {'reachable': known, 'schema_version': figures.schema_version if known else None,
                     'schema_current': known and figures.schema_version == expected_schema},
        'spool': {'pending': figures.spool_pending if known else None,
                  'oldest_pending_seconds': figures.spool_oldest_pending_seconds if known else None},
        'quarantine': {'held': figures.quarantine_held if known else None},
        'outbox': {'queued': figures.outbox_queued if known else None,
                   'failed': figures.outbox_failed if known else None,
                   'oldest_queued_seconds': figures.outbox_oldest_queued_seconds if known else None,
                   'sent_last_hour': figures.sent_last_hour if known else None},
        'listeners': [{'protocol': c.protocol, 'address': c.address, 'answers': c.answers, 'detail': c.detail}
                      for c in listeners]}
