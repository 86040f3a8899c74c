"""Typed rows: one NamedTuple per table that a batch writes, whose fields are exactly the COPY columns.

Tuples because COPY and executemany take them as they are (a dataclass would be converted field by field for
every row); named and typed so that nobody keeps positions and column lists in step by hand. `Rows` collects a
planned batch, table by table, in foreign-key order.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import NamedTuple

from psycopg.types.json import Jsonb


class RawRow(NamedTuple):
    raw_id: int
    sha256: bytes
    data: bytes
    size: int
    source: str
    envelope_from: str | None
    envelope_to: list[str] | None
    peer: str | None
    helo: str | None


RAW_TYPES = ('int8', 'bytea', 'bytea', 'int4', 'text', 'text', 'text[]', 'text', 'text')   # binary COPY


class TicketRow(NamedTuple):
    ticket_id: int
    mailbox_id: int
    title: str
    status: str
    category: str
    priority: str
    person_id: int | None
    from_address: str | None
    connect_id: int | None
    num_messages: int
    has_attachment: bool
    thread_token: str


class InteractionRow(NamedTuple):
    """An inbound message."""
    interaction_id: int
    ticket_id: int
    mailbox_id: int
    direction: str
    type: str
    status: str
    sent_date: datetime.datetime | None
    subject: str
    subject_bare: str
    from_name: str
    from_email: str
    to_addresses: Jsonb
    cc_addresses: Jsonb
    body_plain: str
    body_html: str | None
    message_id: str
    in_reply_to: list[str]
    refs: list[str]
    thread_rule: str
    auto_submitted: str | None
    bounce: Jsonb | None
    person_id: int | None
    raw_id: int
    num_attachments: int
    defects: list[str]
    state: str | None                  # Queued when it is new work for the agents (Genesys), else None
    queue_id: int | None


class OutboundRow(NamedTuple):
    """An outbound message: an agent's reply or an acknowledgement."""
    interaction_id: int
    ticket_id: int
    mailbox_id: int
    direction: str
    type: str
    status: str
    subject: str
    subject_bare: str
    from_name: str
    from_email: str
    to_addresses: Jsonb
    cc_addresses: Jsonb
    body_plain: str
    body_html: str
    message_id: str
    in_reply_to: list[str]
    refs: list[str]
    thread_rule: str
    auto_submitted: str | None
    num_attachments: int
    note: str | None
    user_data: Jsonb


class BlobRow(NamedTuple):
    sha256: bytes
    size: int
    data: bytes


class AttachmentRow(NamedTuple):
    interaction_id: int
    position: int
    filename: str
    content_type: str
    content_id: str | None
    inline: bool
    size: int
    sha256: bytes


class AuditRow(NamedTuple):
    ticket_id: int
    interaction_id: int | None
    action: str
    modifier: str
    status_before: str | None
    status_after: str | None
    target: str
    modifier_id: int | None = None       # the agent's id, when an agent caused the entry


class OutboxRow(NamedTuple):
    interaction_id: int
    ticket_id: int
    mailbox_id: int
    mail_from: str
    rcpt_to: list[str]
    data: bytes
    kind: str
    message_id: str


class QuarantineRow(NamedTuple):
    reason: str
    source: str
    mailbox_hint: str | None
    sha256: bytes
    data: bytes
    raw_id: int | None


class TicketUpdate(NamedTuple):
    """Follow-ups in a batch on a ticket that existed before it."""
    messages: int = 0
    has_attachment: bool = False
    reopen: bool = False
    answered_by: int | None = None      # the customer's message that answers a ticket waiting for it


class ThreadWaitRow(NamedTuple):
    """A Message-ID named by a message that opened a ticket of its own (see threads.waited_for)."""
    mailbox_id: int
    message_id: str
    ticket_id: int
    interaction_id: int
    sent_date: datetime.datetime | None


class BounceMark(NamedTuple):
    """A delivery report about one of our own messages: (mailbox, its Message-ID, what the report says)."""
    mailbox_id: int
    message_id: str
    report: str


def jsonb(value) -> Jsonb:
    """A value for a jsonb column."""
    return Jsonb(value)


def columns(row_type: type) -> tuple[str, ...]:
    return row_type._fields


@dataclass
class Rows:
    """Everything a planned batch writes, table by table, in foreign-key order."""
    raw: list[RawRow] = field(default_factory=list)
    tickets: list[TicketRow] = field(default_factory=list)
    interactions: list[InteractionRow] = field(default_factory=list)
    outbound: list[OutboundRow] = field(default_factory=list)
    blobs: dict[bytes, BlobRow] = field(default_factory=dict)
    attachments: list[AttachmentRow] = field(default_factory=list)
    audits: list[AuditRow] = field(default_factory=list)
    ticket_updates: dict[int, TicketUpdate] = field(default_factory=dict)
    quarantine: list[QuarantineRow] = field(default_factory=list)
    outbox: list[OutboxRow] = field(default_factory=list)
    bounced: list[BounceMark] = field(default_factory=list)
    waits: list[ThreadWaitRow] = field(default_factory=list)
    resolved_waits: list[tuple[int, str]] = field(default_factory=list)   # (mailbox, Message-ID) arrived
    merges: list[tuple[int, int]] = field(default_factory=list)           # (merged ticket, kept ticket)
    spool_states: dict[int, str] = field(default_factory=dict)     # raw_id -> done | quarantined


def addresses_json(people) -> list[dict]:
    return [{'name': p.name, 'email': p.email} for p in people]


def outbound_row(mailbox_id: int, kind: str, rule: str, draft, composed, status: str,
                 auto_submitted: str | None = None, note: str | None = None,
                 user_data: dict | None = None) -> OutboundRow:
    """A composed outbound message (an agent's reply, an acknowledgement) as its interaction row."""
    return OutboundRow(
        draft.interaction_id, draft.ticket_id, mailbox_id, 'outbound', kind, status, composed.subject,
        composed.subject_bare, draft.sender.name, draft.sender.email, Jsonb(addresses_json(draft.to)),
        Jsonb(addresses_json(draft.cc)), composed.final_plain, composed.final_html, composed.message_id,
        [composed.in_reply_to] if composed.in_reply_to else [], list(composed.references), rule, auto_submitted,
        len(draft.attachments), note or None, Jsonb(user_data or {}))


def outbox_row(mailbox_id: int, kind: str, draft, composed) -> OutboxRow:
    """The outbox row holding a composed message's exact bytes."""
    return OutboxRow(draft.interaction_id, draft.ticket_id, mailbox_id, composed.mail_from, list(composed.recipients),
                     composed.data, kind, composed.message_id)
