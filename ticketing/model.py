"""The frozen dataclasses the ticketing package shares between its store, intake, workers, operations and formats.

Names follow the seeds: SuperOffice's mailbox, TicketInfo and TicketEntity (002, 003), iService's interactions,
questions, answers and status audit (000). No SQL and no behaviour beyond small derived values.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass

from outbound.compose import OutgoingAttachment

# What became of one inbound message (the `Outcome` of `replay --json` and of CreateTicketFromMailData).
NEW, FOLLOWUP, DUPLICATE, QUARANTINED = 'new', 'followup', 'duplicate', 'quarantined'


@dataclass(frozen=True)
class Mailbox:
    """A mailbox mail is delivered to (SuperOffice MailboxId)."""
    mailbox_id: int
    address: str
    name: str
    category: str
    priority: str
    follow_up: str                 # reopen | new-ticket: what a reply to a closed ticket does
    is_default: bool
    catch_all: bool = False
    ack_template: str | None = None
    queue_id: int | None = None    # the queue its new work goes to (Genesys)


@dataclass(frozen=True)
class TicketSummary:
    """The TicketInfo fields of a ticket (SuperOffice CreateTicketFromMailData's response)."""
    ticket_id: int
    title: str
    owner_name: str
    category: str
    priority: str
    person_name: str | None
    contact_name: str | None


@dataclass(frozen=True)
class TicketFacts:
    """What threading needs to know of a ticket: where it is, whether it is open, who may continue it."""
    ticket_id: int
    mailbox_id: int
    base_status: str
    participants: frozenset[str]
    thread_token: str


@dataclass(frozen=True)
class SourceMessage:
    """A message's bytes and where they came from."""
    raw: bytes
    source: str          # the file, and `#N` (1-based) for the N-th message of an mbox; `smtp #N` for the spool
    path: str = ''
    envelope_from: str | None = None
    envelope_to: tuple[str, ...] | None = None
    peer: str | None = None
    helo: str | None = None
    raw_id: int | None = None       # set when the bytes are stored already (SMTP/LMTP spool)
    mailbox: str | None = None      # the address it was delivered to (an envelope recipient), if known
    trace_len: int = 0              # bytes of postdesk's own Received: header in front (not part of the identity)
    sha256: bytes | None = None     # the digest of the bytes after trace_len, when the store computed it already
    handed_in_by: str | None = None  # the agent who handed the message in (the API), who its audit entries name
    handed_in_by_id: int | None = None  # that agent's id

    @property
    def sent(self) -> bytes:
        """The bytes as the sender sent them: without postdesk's own Received: header (what is parsed)."""
        return self.raw[self.trace_len:] if self.trace_len else self.raw


@dataclass(frozen=True)
class Outcome:
    """What became of one message: SuperOffice's TicketInfo plus the interaction, outcome and thread rule."""
    source: str
    outcome: str
    ticket: TicketSummary | None = None
    interaction_id: int | None = None
    rule: str | None = None
    reason: str | None = None
    message_id: str | None = None
    mailbox: str | None = None
    raw_id: int | None = None          # the spooled message it came from


@dataclass(frozen=True)
class Envelope:
    """The SMTP/LMTP envelope of an accepted message."""
    mail_from: str
    rcpt_to: tuple[str, ...]
    peer: str
    helo: str
    protocol: str                 # smtp or lmtp
    trace_len: int = 0            # bytes of the Received: header postdesk put in front of the message


@dataclass(frozen=True)
class Pending:
    """A spooled message claimed by an intake worker."""
    raw_id: int
    data: bytes
    sha256: bytes
    envelope_from: str | None
    envelope_to: tuple[str, ...]
    peer: str | None
    helo: str | None
    source: str
    received_at: datetime.datetime
    trace_len: int = 0
    crashes: int = 0              # how many times a worker died holding it (see store.spool)


@dataclass(frozen=True)
class TicketForReply:
    """A ticket as a reply (or an acknowledgement) needs it."""
    ticket_id: int
    title: str
    base_status: str
    status: str
    thread_token: str
    created_at: datetime.datetime
    mailbox_id: int
    mailbox_address: str
    mailbox_name: str
    customer_email: str | None
    customer_name: str
    customer_id: int | None = None


@dataclass(frozen=True)
class Question:
    """The interaction being answered, as the reply quotes it."""
    interaction_id: int
    subject: str
    subject_bare: str
    type: str
    status: str
    date: datetime.datetime
    from_name: str
    from_email: str
    body_html: str | None
    body_plain: str
    message_id: str
    references: tuple[str, ...]
    to_addresses: tuple[dict, ...] = ()       # its To: [{"name", "email"}]


@dataclass(frozen=True)
class Answer:
    """iService's `answer` object (seed 000), as much of it as a mail pipeline uses."""
    ticket_id: int
    body_html: str
    leave_open: bool = False
    expect_reply: bool = False
    add_subject_ref_num: bool = True
    supress_subject_ref: bool = False
    dest_email: tuple[str, ...] = ()          # To; default: the ticket's customer
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    attachments: tuple[OutgoingAttachment, ...] = ()
    note: str = ''
    agent: str = 'postdesk'                   # who sends it (agent login or name), for the audit
    agent_id: int | None = None               # and the agent's id, when an agent of the API sends it
    in_response_to: int | None = None         # the interaction answered; default: the latest customer message
    subject: str | None = None                # the subject to answer under; default: the question's
    draft_id: int | None = None               # the draft reply (Genesys Reply) this sends, when there is one


@dataclass(frozen=True)
class AuditEntry:
    """One status change (iService's statusAudit entry)."""
    at: datetime.datetime
    action: str
    modifier: str
    status_before: str | None
    status_after: str | None
    modifier_id: int | None = None         # the agent's id, when an agent made the change


@dataclass(frozen=True)
class AttachmentInfo:
    """An attachment as listed with its message (no bytes)."""
    filename: str
    content_type: str
    size: int
    content_id: str | None


@dataclass(frozen=True)
class StoredReply:
    """An outbound reply just written: its interaction, when, its status and its private note."""
    interaction_id: int
    created_at: datetime.datetime
    status: str
    note: str
    attachments: tuple[AttachmentInfo, ...]
    audit: tuple[AuditEntry, ...]
    closed_ticket: bool = False               # the reply closed its ticket (send and close)


@dataclass(frozen=True)
class MessageSummary:
    """A ticket's message as TicketEntity lists it."""
    interaction_id: int
    created_at: datetime.datetime
    from_name: str
    from_email: str
    subject: str
    message_id: str
    type: str
    thread_rule: str
    num_attachments: int
    direction: str
    status: str
    person_id: int | None


@dataclass(frozen=True)
class Tag:
    """A ticket's tag: its name, the id the name has (None only for a name written before ids were kept) and its
    ToolTip. In a save (SuperOffice's Tags), either the id or the name may be missing."""
    tag_id: int | None
    name: str | None
    tooltip: str = ''


@dataclass(frozen=True)
class TicketRecord:
    """A ticket with the fields of SuperOffice's TicketEntity that mean something for mail."""
    ticket_id: int
    title: str
    created_at: datetime.datetime
    last_changed: datetime.datetime
    base_status: str
    status: str
    category: str
    priority: str
    owner_id: int | None
    owner_name: str | None
    person_id: int | None
    person_name: str | None
    person_email: str | None
    from_address: str | None
    connect_id: int | None
    num_messages: int
    num_replies: int
    has_attachment: bool
    tags: tuple[Tag, ...]
    replied_at: datetime.datetime | None
    closed_at: datetime.datetime | None
    mailbox_id: int
    mailbox_address: str
    custom_fields: dict
    flagged: str | None
    queue_id: int | None
    workbin_id: int | None
    deadline: datetime.datetime | None = None
    person_contact: str | None = None
    messages: tuple[MessageSummary, ...] = ()


@dataclass(frozen=True)
class HeldMessage:
    """A quarantined message (without its bytes)."""
    quarantine_id: int
    created_at: datetime.datetime
    reason: str
    source: str
    mailbox_hint: str | None
    size: int
    state: str


@dataclass(frozen=True)
class OutboxEntry:
    """An outgoing message as an operator sees it (`postdesk outbox list`)."""
    outbox_id: int
    state: str
    kind: str
    ticket_id: int | None
    interaction_id: int | None
    rcpt_to: tuple[str, ...]
    subject: str
    attempts: int
    created_at: datetime.datetime
    next_attempt_at: datetime.datetime
    sent_at: datetime.datetime | None
    last_error: str | None
    relay_reply: str | None


@dataclass(frozen=True)
class DueMessage:
    """An outbox row claimed by a delivery worker: what to send, and how long it has been trying."""
    outbox_id: int
    interaction_id: int | None
    ticket_id: int | None
    mailbox_id: int
    mail_from: str
    rcpt_to: tuple[str, ...]
    data: bytes
    attempts: int
    age: float
    kind: str
    message_id: str | None


@dataclass(frozen=True)
class WorkItem:
    """An interaction as agents work on it (Genesys, seed 001): its state, where it is, who holds it."""
    interaction_id: int
    ticket_id: int
    mailbox_id: int
    direction: str
    state: str
    queue_id: int | None
    queue_name: str | None
    workbin_id: int | None
    owner_id: int | None
    invited_id: int | None
    rejected_by: tuple[int, ...]
    subject: str
    from_name: str
    from_email: str
    to_addresses: tuple[dict, ...]
    user_data: dict
    received_at: datetime.datetime
    parent_id: int | None


@dataclass(frozen=True)
class Workbin:
    """A holding area for interactions: an agent's own (Drafts, InProgress) or a group's."""
    workbin_id: int
    name: str
    agent_id: int | None
    agent_group: str | None
    place_group: str | None


@dataclass(frozen=True)
class Event:
    """A notification for one agent's clients, in the order it was committed."""
    event_id: int
    agent_id: int
    channel: str
    data: dict


@dataclass(frozen=True)
class Agent:
    """Someone who works on tickets through the API: an agent of some mailboxes, or an admin of all."""
    agent_id: int
    login: str
    full_name: str
    email: str | None
    role: str
    active: bool
    mailbox_ids: tuple[int, ...] = ()

    @property
    def is_admin(self) -> bool:
        return self.role == 'admin'

    @property
    def scope(self) -> list[int] | None:
        """The mailboxes whose tickets the agent may see; None: all of them."""
        return None if self.is_admin else list(self.mailbox_ids)

    def may_see(self, mailbox_id: int) -> bool:
        return self.is_admin or mailbox_id in self.mailbox_ids


@dataclass(frozen=True)
class StoredAttachment:
    """An attachment of a stored message, with its number on that message (1 for the first)."""
    number: int
    filename: str
    content_type: str
    size: int
    content_id: str | None
    inline: bool


@dataclass(frozen=True)
class MessageDetail:
    """One message of a ticket as the API shows it (SuperOffice's TicketMessageEntity, seed 002)."""
    interaction_id: int
    ticket_id: int
    mailbox_id: int
    created_at: datetime.datetime
    direction: str
    type: str
    status: str
    subject: str
    from_name: str
    from_email: str
    to_addresses: list
    cc_addresses: list
    message_id: str
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    thread_rule: str
    body_html: str | None
    body_plain: str
    auto_submitted: str | None
    person_id: int | None
    sent_date: datetime.datetime | None = None        # its Date: header, when it had one that could be read
    attachments: tuple[StoredAttachment, ...] = ()


@dataclass(frozen=True)
class TicketFilter:
    """Which tickets a list shows (SuperOffice's $filter on BaseStatus, OwnedBy, MailboxId, LastChanged gt) and
    which page of them ($top, $skip), newest change first."""
    base_status: str | None = None
    owned_by: int | None = None
    mailbox_id: int | None = None
    changed_after: datetime.datetime | None = None
    top: int = 100
    skip: int = 0


@dataclass(frozen=True)
class TicketPage:
    """A page of tickets and how many match the filter in all."""
    total: int
    tickets: tuple[TicketRecord, ...]


@dataclass(frozen=True)
class CaseContext:
    """What iService's response shows of a ticket beyond what a reply needs: its thread properties (kept in its
    custom fields), its category (iService's topic) and its owner."""
    thread_properties: tuple = ()
    category: str = ''
    owner_id: int | None = None
    owner_name: str | None = None


UNASSIGNED, ROUND_ROBIN = 0, 2147483647      # SuperOffice's OwnedBy.AssociateId: nobody, or the mailbox's rule


@dataclass(frozen=True)
class TicketSave:
    """An agent's save of a TicketEntity (SuperOffice SaveTicketEntity, seed 002): the ticket (None: a new one)
    and only the fields the request gave, already read (`changes` keys: title, base_status, status, category,
    priority, owned_by, tags, deadline, connect_id, custom_fields)."""
    ticket_id: int | None
    changes: dict
    person_email: str | None = None
    person_name: str = ''
    from_address: str | None = None
    mailbox_id: int | None = None


@dataclass(frozen=True)
class PipelineFigures:
    """What `postdesk status` reads from the database: the spool, the quarantine, the outbox, the schema."""
    spool_pending: int
    spool_oldest_pending_seconds: float | None
    quarantine_held: int
    outbox_queued: int
    outbox_failed: int
    outbox_oldest_queued_seconds: float | None
    sent_last_hour: int
    schema_version: str | None


@dataclass(frozen=True)
class ListenerCheck:
    """Whether a configured listener of `postdesk serve` answered with its 220 greeting."""
    protocol: str                 # smtp or lmtp
    address: str
    answers: bool
    detail: str                   # the greeting, or why there was none
