"""Intake, step 4: acknowledge. The new tickets of a batch whose mailbox acknowledges get an automatic answer
with the ticket's `[ref#: T-I]` reference, queued in the same transaction as the ticket.

Never to auto-submitted mail (RFC 3834 and the vendor headers, list and bulk mail included), delivery reports,
postdesk's own messages or mail from one of its mailboxes, and at most `ack_per_hour` per recipient per hour:
two autoresponders can never ping-pong. The limit holds exactly with several intake workers: the count is read
under a per-recipient lock held until the batch commits (see `store.outbox.recent_acks`). An acknowledgement
goes out with a null return path (RFC 3834 3.3), so nothing answers it in turn; one that cannot be composed is
skipped and logged, the ticket is opened all the same.
"""
from __future__ import annotations

import datetime
import logging
from dataclasses import replace

from ingest import ParsedMail
from outbound.compose import ComposeError, compose_reply, is_own_message_id
from outbound.refs import bare_subject

from ..config import Config
from ..drafts import AckError, ReplyError, ack_draft, display_zone
from ..model import Question, TicketForReply
from ..statuses import (AUTO_ACK, CUSTOMER_EMAIL, INTERACTION_TARGET, RECEIVED, SYSTEM_MODIFIER,
                        interaction_transition)
from ..store import batches
from ..store.db import Connection
from ..store.outbox import ACK_KIND, recent_acks
from ..store.rows import AuditRow, outbound_row, outbox_row
from .plan import BatchPlan, Knowledge, NewTicket

log = logging.getLogger('postdesk.intake')
SYSTEM_LOCAL_PARTS = ('mailer-daemon', 'postmaster', 'noreply', 'no-reply', 'donotreply')


def reason_not_to_acknowledge(parsed: ParsedMail, own_addresses: set[str]) -> str | None:
    """Why this message must not be acknowledged, or None when it may be."""
    if parsed.bounce is not None:
        return 'a delivery report'
    if parsed.auto_submitted is not None:
        return 'automatic mail (%s)' % parsed.auto_submitted
    sender = parsed.from_.email.lower() if parsed.from_ and parsed.from_.email else ''
    if '@' not in sender:
        return 'no sender address'
    if sender in own_addresses or sender.split('@', 1)[0] in SYSTEM_LOCAL_PARTS:
        return 'sent by a mailbox or a system address'
    if is_own_message_id(parsed.message_id) or any(is_own_message_id(m) for m in parsed.in_reply_to):
        return "postdesk's own message"
    return None


def acknowledge(conn: Connection, plan: BatchPlan, knowledge: Knowledge, config: Config,
                own_addresses: set[str]) -> None:
    """Add the acknowledgements of the plan's new tickets to its rows."""
    merged = {ticket_id for ticket_id, _ in plan.rows.merges}       # merged away in this very batch
    candidates = [new for new in plan.new_tickets.values() if new.placement.mailbox.ack_template
                  and new.row.ticket_id not in merged
                  and reason_not_to_acknowledge(new.placement.prepared.parsed, own_addresses) is None]
    if not candidates:
        return
    knowledge.acks_sent = recent_acks(conn, sorted({new.placement.prepared.parsed.from_.email.lower()
                                                    for new in candidates}))
    wanted = [new for new in candidates
              if under_ack_limit(new.placement.prepared.parsed, knowledge, config.ack_per_hour)]
    if not wanted:
        return
    try:
        zone = display_zone(config.timezone)
    except ReplyError as exc:
        log.error('no acknowledgements: %s', exc)
        return
    ids = iter(batches.allocate_ids(conn, 'interaction', 'interaction_id', len(wanted)))
    for new in wanted:
        add_acknowledgement(plan, new, next(ids), zone)


def under_ack_limit(parsed: ParsedMail, knowledge: Knowledge, per_hour: int) -> bool:
    """Whether the sender may get one more acknowledgement this hour (and count it)."""
    sender = parsed.from_.email.lower()
    sent = knowledge.acks_sent.get(sender, 0)
    if sent >= per_hour:
        log.info('no acknowledgement to %s: %d sent in the last hour', sender, sent)
        return False
    knowledge.acks_sent[sender] = sent + 1
    return True


def ticket_and_question(new: NewTicket) -> tuple[TicketForReply, Question]:
    """The new ticket and its first message as a reply sees them (nothing is read back: it is not written yet)."""
    placement, row = new.placement, new.row
    parsed, mailbox = placement.prepared.parsed, placement.mailbox
    now = datetime.datetime.now(datetime.timezone.utc)
    ticket = TicketForReply(row.ticket_id, row.title, 'active', row.status, row.thread_token, now, mailbox.mailbox_id,
                            mailbox.address, mailbox.name, parsed.from_.email, parsed.from_.name)
    question = Question(new.interaction_id, parsed.subject, bare_subject(parsed.subject), CUSTOMER_EMAIL, RECEIVED,
                        parsed.date or now, parsed.from_.name, parsed.from_.email, parsed.html, parsed.text,
                        placement.prepared.message_id, tuple(parsed.references))
    return ticket, question


def add_acknowledgement(plan: BatchPlan, new: NewTicket, interaction_id: int, zone: datetime.tzinfo) -> None:
    ticket, question = ticket_and_question(new)
    mailbox = new.placement.mailbox
    try:
        draft = ack_draft(ticket, question, interaction_id, mailbox.ack_template, zone)
        composed = replace(compose_reply(draft), mail_from='')      # RFC 3834 3.3: a null return path
    except (AckError, ComposeError) as exc:   # the customer's message is stored all the same; only the ack is skipped
        log.warning('ticket %d: no acknowledgement to %s: %s', ticket.ticket_id, question.from_email, exc)
        return
    queued = interaction_transition('queue')
    rows = plan.rows
    rows.outbound.append(outbound_row(mailbox.mailbox_id, AUTO_ACK, ACK_KIND, draft, composed, queued.after,
                                      auto_submitted='auto-replied'))
    rows.outbox.append(outbox_row(mailbox.mailbox_id, ACK_KIND, draft, composed))
    rows.audits.append(AuditRow(ticket.ticket_id, interaction_id, queued.action, SYSTEM_MODIFIER, None, queued.after,
                                INTERACTION_TARGET))
    new.row = new.row._replace(num_messages=new.row.num_messages + 1)
