"""The status vocabulary and the allowed transitions, each with the action its audit entry records.

Tickets have a base status (SuperOffice's BaseStatus, seed 002: active, closed, postponed, deleted) and a status
shown to agents (Open, Closed, Waiting for customer, Postponed, Deleted; an agent's save moves between them). Interactions (iService, seed 000) are Received when a
customer's message came in; an outbound one is Unsent until the relay takes it (Sent) or delivery fails for
good (Failed), and a failed one can be queued again. The spool, outbox and quarantine rows have states of their
own. `schema.sql` holds the same values in CHECK constraints; a test keeps the two equal.
"""
from __future__ import annotations

from dataclasses import dataclass

# Ticket base status (stored) and the names TicketEntity shows for them.
ACTIVE, CLOSED_BASE, POSTPONED, DELETED = 'active', 'closed', 'postponed', 'deleted'
BASE_STATUSES = (ACTIVE, CLOSED_BASE, POSTPONED, DELETED)
BASE_STATUS_NAMES = {ACTIVE: 'Active', CLOSED_BASE: 'Closed', POSTPONED: 'Postponed', DELETED: 'Deleted'}
ENDED_BASE_STATUSES = frozenset({CLOSED_BASE, DELETED})

# Ticket status as agents see it.
OPEN, CLOSED, WAITING_FOR_CUSTOMER = 'Open', 'Closed', 'Waiting for customer'
POSTPONED_STATUS, DELETED_STATUS = 'Postponed', 'Deleted'
TICKET_STATUSES = (OPEN, CLOSED, WAITING_FOR_CUSTOMER, POSTPONED_STATUS, DELETED_STATUS)

# Interaction status.
RECEIVED, UNSENT, SENT, FAILED = 'Received', 'Unsent', 'Sent', 'Failed'
DRAFT_STATUS, CANCELLED_STATUS = 'Draft', 'Cancelled'         # a reply being written, and one abandoned
INTERACTION_STATUSES = (RECEIVED, DRAFT_STATUS, UNSENT, SENT, FAILED, CANCELLED_STATUS)

# Interaction types (the Type of a ticket's message).
CUSTOMER_EMAIL, AUTO_REPLY, BOUNCE_REPORT = 'Customer Email', 'Auto Reply', 'Bounce'
AGENT_EMAIL, AUTO_ACK = 'Agent Email', 'Auto Acknowledgement'

# Rows of the spool (raw_message), the outbox and the quarantine.
SPOOL_PENDING, SPOOL_DONE, SPOOL_QUARANTINED = 'pending', 'done', 'quarantined'
SPOOL_STATES = (SPOOL_PENDING, SPOOL_DONE, SPOOL_QUARANTINED)
OUTBOX_QUEUED, OUTBOX_SENT, OUTBOX_FAILED = 'queued', 'sent', 'failed'
OUTBOX_STATES = (OUTBOX_QUEUED, OUTBOX_SENT, OUTBOX_FAILED)
HELD, RELEASED = 'held', 'released'
QUARANTINE_STATES = (HELD, RELEASED)

# Audit targets: a change of the ticket's status, or of the interaction's own.
TICKET_TARGET, INTERACTION_TARGET, WORK_TARGET = 'ticket', 'interaction', 'work'
SYSTEM_MODIFIER = 'postdesk'

# Agents' roles: an agent works on the tickets of its mailboxes, an admin on all.
AGENT_ROLE, ADMIN_ROLE = 'agent', 'admin'
AGENT_ROLES = (AGENT_ROLE, ADMIN_ROLE)


class TransitionError(ValueError):
    """A status change the transition table does not allow from the current status."""


@dataclass(frozen=True)
class Transition:
    """One allowed change: from any of `before` (None: a row being created; empty: from any status) to `after`
    (with the ticket base status `base`, for ticket transitions), audited as `action`."""
    name: str
    before: frozenset[str | None]
    after: str
    action: str
    base: str | None = None

    def allows(self, status: str | None) -> bool:
        return not self.before or status in self.before

    def audit_action(self, detail: str | None = None) -> str:
        return '%s: %s' % (self.action, detail) if detail else self.action


def _table(*transitions: Transition) -> dict[str, Transition]:
    return {t.name: t for t in transitions}


TICKET_TRANSITIONS = _table(
    Transition('create', frozenset({None}), OPEN, 'Created from email', ACTIVE),
    Transition('reopen', frozenset({CLOSED, OPEN, WAITING_FOR_CUSTOMER}), OPEN, 'Reopened by customer email', ACTIVE),
    Transition('customer_answered', frozenset({WAITING_FOR_CUSTOMER}), OPEN, 'Customer answered', ACTIVE),
    Transition('send_and_close', frozenset(), CLOSED, 'Sent and closed', CLOSED_BASE),
    Transition('send_leave_open', frozenset(), OPEN, 'Sent and left open', ACTIVE),
    Transition('send_expect_reply', frozenset(), WAITING_FOR_CUSTOMER, 'Sent, left open, expecting a reply', ACTIVE),
    # An agent's save of the ticket (SuperOffice SaveTicketEntity, seed 002).
    Transition('agent_create', frozenset({None}), OPEN, 'Created by agent', ACTIVE),
    Transition('agent_open', frozenset(), OPEN, 'Opened by agent', ACTIVE),
    Transition('agent_wait', frozenset(), WAITING_FOR_CUSTOMER, 'Set waiting for customer by agent', ACTIVE),
    Transition('agent_close', frozenset(), CLOSED, 'Closed by agent', CLOSED_BASE),
    Transition('agent_postpone', frozenset(), POSTPONED_STATUS, 'Postponed by agent', POSTPONED),
    Transition('agent_delete', frozenset(), DELETED_STATUS, 'Deleted by agent', DELETED),
    Transition('merge', frozenset(), CLOSED, 'Merged into ticket', CLOSED_BASE),
)
MERGED_HERE_ACTION = 'Ticket merged into this one'      # the kept ticket's audit entry (its status is unchanged)

# What an agent's save does when it names a status, or only a base status.
AGENT_STATUS_TRANSITIONS = {OPEN: 'agent_open', WAITING_FOR_CUSTOMER: 'agent_wait', CLOSED: 'agent_close',
                            POSTPONED_STATUS: 'agent_postpone', DELETED_STATUS: 'agent_delete'}
BASE_STATUS_DEFAULTS = {ACTIVE: OPEN, CLOSED_BASE: CLOSED, POSTPONED: POSTPONED_STATUS, DELETED: DELETED_STATUS}

# Audit actions of an agent's changes that are not status changes.
ASSIGNED, UNASSIGNED, FIELD_CHANGED = 'Assigned to %s', 'Unassigned', 'Changed %s'

INTERACTION_TRANSITIONS = _table(
    Transition('queue', frozenset({None, DRAFT_STATUS}), UNSENT, 'Queued for delivery'),
    Transition('draft', frozenset({None}), DRAFT_STATUS, 'Reply started'),
    Transition('cancel', frozenset({DRAFT_STATUS}), CANCELLED_STATUS, 'Draft cancelled'),
    Transition('deliver', frozenset({UNSENT, FAILED}), SENT, 'Delivered to the relay'),
    Transition('fail', frozenset({UNSENT}), FAILED, 'Delivery failed'),
    Transition('bounce', frozenset({UNSENT, SENT}), FAILED, 'Bounced'),
    Transition('retry', frozenset({FAILED}), UNSENT, 'Delivery retried'),
)


def ticket_transition(name: str) -> Transition:
    return TICKET_TRANSITIONS[name]


def interaction_transition(name: str) -> Transition:
    return INTERACTION_TRANSITIONS[name]


def require(transition: Transition, status: str | None) -> Transition:
    """The transition, when the table allows it from `status`; else TransitionError."""
    if not transition.allows(status):
        raise TransitionError('%s is not allowed from %s' % (transition.name, status or 'nothing'))
    return transition


def reply_transition(leave_open: bool, expect_reply: bool) -> Transition:
    """What answering a ticket does to it: waiting for the customer is an open state, whatever leave_open says."""
    if expect_reply:
        return TICKET_TRANSITIONS['send_expect_reply']
    return TICKET_TRANSITIONS['send_leave_open' if leave_open else 'send_and_close']


def base_status_name(base_status: str) -> str:
    return BASE_STATUS_NAMES.get(base_status, base_status)


def base_status_named(name: str) -> str | None:
    """The stored base status a TicketEntity's BaseStatus names (case-insensitive), or None."""
    wanted = name.strip().lower()
    return next((base for base, shown in BASE_STATUS_NAMES.items() if shown.lower() == wanted), None)


def ticket_status_named(name: str) -> str | None:
    """The ticket status a name means (case-insensitive), or None."""
    wanted = name.strip().lower()
    return next((status for status in TICKET_STATUSES if status.lower() == wanted), None)


def agent_transition(status: str | None, base: str | None, current: str) -> Transition | None:
    """The transition an agent's save asks for: by the status named, else the base status's usual status; None
    when it changes nothing. Raises TransitionError when the two disagree."""
    wanted = status or (BASE_STATUS_DEFAULTS[base] if base else None)
    if wanted is None:
        return None
    transition = TICKET_TRANSITIONS[AGENT_STATUS_TRANSITIONS[wanted]]
    if base is not None and transition.base != base:
        raise TransitionError('status %s does not go with base status %s' % (wanted, base_status_name(base)))
    if wanted == current or (status is None and base == ACTIVE and current in (OPEN, WAITING_FOR_CUSTOMER)):
        return None
    return transition


# --------------------------------------------------------------------------------- agents' work (Genesys)
# An inbound customer message that needs an answer is a Genesys email interaction (seed 001): offered to one
# agent, accepted, worked on, handed on or completed. Its `state`, the operation names of seed 001 (and 004's
# Pull) that change it, who may perform each, and the audit action each records.

QUEUED, INVITED, ACCEPTED, COMPLETED, IN_WORKBIN = 'Queued', 'Invited', 'Accepted', 'Completed', 'InWorkbin'
DRAFT, CANCELLED = 'Draft', 'Cancelled'
WORK_STATES = (QUEUED, INVITED, ACCEPTED, COMPLETED, IN_WORKBIN, DRAFT, CANCELLED)
ACTIVE_WORK_STATES = (QUEUED, INVITED, ACCEPTED, IN_WORKBIN, DRAFT)
OWNER, INVITEE, SYSTEM, GROUP_MEMBER = 'owner', 'invitee', 'system', 'group member'


@dataclass(frozen=True)
class WorkTransition:
    """An operation on an interaction: from which states, to which state, who may perform it."""
    name: str
    before: frozenset[str]
    after: str | None               # None: the state stays (the operation changes something else)
    actor: str
    action: str


WORK_TRANSITIONS = {t.name: t for t in (
    WorkTransition('Offer', frozenset({QUEUED}), INVITED, SYSTEM, 'Offered to an agent'),
    WorkTransition('Accept', frozenset({INVITED}), ACCEPTED, INVITEE, 'Accepted'),
    WorkTransition('Reject', frozenset({INVITED}), QUEUED, INVITEE, 'Rejected'),
    WorkTransition('Expire', frozenset({INVITED}), QUEUED, SYSTEM, 'Invitation not answered in time'),
    WorkTransition('Complete', frozenset({ACCEPTED}), COMPLETED, OWNER, 'Completed'),
    WorkTransition('PlaceInQueue', frozenset({ACCEPTED}), QUEUED, OWNER, 'Placed in queue'),
    WorkTransition('PlaceInWorkbin', frozenset({ACCEPTED}), IN_WORKBIN, OWNER, 'Placed in workbin'),
    WorkTransition('Transfer', frozenset({ACCEPTED}), ACCEPTED, OWNER, 'Transferred'),
    WorkTransition('Pull', frozenset({IN_WORKBIN}), ACCEPTED, GROUP_MEMBER, 'Pulled from workbin'),
    WorkTransition('UpdateUserData', frozenset({ACCEPTED, DRAFT}), None, OWNER, 'User data updated'),
    WorkTransition('AttachUserData', frozenset({ACCEPTED, DRAFT}), None, OWNER, 'User data attached'),
    WorkTransition('DeleteUserData', frozenset({ACCEPTED, DRAFT}), None, OWNER, 'User data deleted'),
    WorkTransition('Reply', frozenset({ACCEPTED}), None, OWNER, 'Reply started'),
    WorkTransition('ReplyAll', frozenset({ACCEPTED}), None, OWNER, 'Reply to all started'),
    WorkTransition('Cancel', frozenset({DRAFT}), CANCELLED, OWNER, 'Draft cancelled'),
    WorkTransition('Send', frozenset({DRAFT}), COMPLETED, OWNER, 'Draft sent'),
)}


def work_transition(name: str) -> WorkTransition:
    return WORK_TRANSITIONS[name]


def capabilities(state: str | None, roles: frozenset[str]) -> list[str]:
    """The operations an agent in these roles (owner, invitee, group member) may perform now, in the table's
    order; what only the system does is never offered."""
    return [t.name for t in WORK_TRANSITIONS.values()
            if t.actor != SYSTEM and state in t.before and t.actor in roles]
