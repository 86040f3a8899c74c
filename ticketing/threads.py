"""Threading: which ticket an inbound message belongs to, and the rule that decided; and the identity a message is
stored and deduplicated under (its Message-ID, or one derived from its bytes).

Pure: what the database knows is passed in as lookups. In this order:
  1. `In-Reply-To`, then `References` right to left, against Message-IDs stored in the mailbox (ours included:
     every outbound reply is an interaction too, and its fixed per-ticket reference carries the ticket's secret
     thread token, so a header naming it is proof of a real reply) -> `in-reply-to` / `references`;
  2. a delivery status notification threads onto the ticket of the message it reports on and never opens a
     ticket; one about a message we do not know is quarantined -> `bounce`;
  3. the iService subject reference `[ref#: T-I]` (see outbound.refs), accepted only from a participant of
     ticket T (hijack guard); from anyone else it opens a new ticket connected to T -> `subject-ref`;
  4. otherwise a new ticket -> `new`.
A follow-up to a closed ticket reopens it, or opens a new ticket connected to it when the mailbox says so;
auto-replies and bounces never reopen anything.

The same messages give the same tickets in any order (a reversed or merged mbox, a Maildir read out of order,
two MX hosts): a message that opened a ticket of its own although it names other messages (In-Reply-To,
References) leaves those Message-IDs waiting (`waited_for`). When one of them arrives, it joins the ticket its
earliest reply opened (or stays on the ticket its own headers found), and every other ticket opened by a reply
to it is merged into that one (`join_waiting_replies`) -> `earlier-reply`.
"""
from __future__ import annotations

import datetime
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

from ingest import ParsedMail
from outbound.compose import MAX_MESSAGE_ID
from outbound.refs import find_ref

from .model import TicketFacts
from .statuses import ACTIVE, DELETED, ENDED_BASE_STATUSES

IN_REPLY_TO, REFERENCES, BOUNCE, SUBJECT_REF, NEW = 'in-reply-to', 'references', 'bounce', 'subject-ref', 'new'
EARLIER_REPLY = 'earlier-reply'
_TICKET_REFERENCE = re.compile(r'^ticket-(\d{1,18})-([0-9a-f]{32})@', re.I)
DERIVED_ID_DOMAIN = 'sha256.postdesk.invalid'


@dataclass(frozen=True)
class ThreadDecision:
    rule: str
    ticket_id: int | None          # the ticket to follow up on; None opens a new ticket
    connect_id: int | None = None  # for a new ticket: the ticket it is connected to
    reopen: bool = False
    quarantine: str | None = None


@dataclass(frozen=True)
class Lookups:
    """What the database (and the messages earlier in the same batch) know, as functions."""
    ticket_of_message: Callable[[str], int | None]
    ticket: Callable[[int], TicketFacts | None]
    is_agent: Callable[[str], bool] = lambda address: False


@dataclass(frozen=True)
class WaitingReply:
    """A message that opened a ticket of its own while naming a Message-ID not stored yet."""
    ticket_id: int
    interaction_id: int
    sent_date: datetime.datetime | None

    def order(self) -> tuple:
        """Earliest first by the reply's own Date (the same whatever order the messages arrive in)."""
        when = self.sent_date.timestamp() if self.sent_date is not None else float('inf')
        return when, self.interaction_id


def waited_for(parsed: ParsedMail, decision: ThreadDecision) -> list[str]:
    """The Message-IDs a message leaves waiting: those it names, when it opened a ticket of its own (its
    headers found none); its replies' originals, when they arrive, join that ticket."""
    if decision.ticket_id is not None or decision.quarantine:
        return []
    return sorted({normalize_message_id(mid) for _, mid in header_candidates(parsed)
                   if not _TICKET_REFERENCE.match(mid)})


def join_waiting_replies(decision: ThreadDecision, waiting: list[WaitingReply],
                         resolve: Callable[[int], int]) -> tuple[ThreadDecision, list[int]]:
    """A message that replies stored before it name: the ticket it goes to and the tickets merged into that one.
    It stays on the ticket its own headers found, else it joins the ticket its earliest reply opened; every
    other ticket opened by a reply to it is merged there. `resolve` follows earlier merges."""
    tickets = list(dict.fromkeys(resolve(w.ticket_id) for w in sorted(waiting, key=WaitingReply.order)))
    if not tickets:
        return decision, []
    if decision.ticket_id is None:
        decision = ThreadDecision(EARLIER_REPLY, tickets[0])
    kept = resolve(decision.ticket_id)
    return decision, [t for t in tickets if t != kept]


def storage_message_id(parsed: ParsedMail, sha256: bytes) -> str:
    """The Message-ID a message is stored and deduplicated under; one is derived from the bytes if absent."""
    if parsed.message_id:
        return normalize_message_id(parsed.message_id)
    return derived_message_id(sha256)


def derived_message_id(sha256: bytes) -> str:
    """The Message-ID of a message that has none: made from the sha256 of its bytes."""
    return '%s@%s' % (sha256.hex(), DERIVED_ID_DOMAIN)


def is_derived_message_id(message_id: str) -> bool:
    return message_id.endswith('@' + DERIVED_ID_DOMAIN)


def normalize_message_id(message_id: str) -> str:
    """A Message-ID as stored: longer ids are stored by their sha256, so the unique index never overflows."""
    message_id = message_id.strip()
    if len(message_id) <= MAX_MESSAGE_ID:
        return message_id
    return 'sha256:%s' % hashlib.sha256(message_id.encode('utf-8')).hexdigest()


def participants_of(parsed: ParsedMail) -> frozenset[str]:
    """The addresses a message makes participants of its ticket: its sender and its To and Cc (lower-cased)."""
    found = {a.email.lower() for a in (*parsed.to, *parsed.cc) if a.email}
    if parsed.from_ and parsed.from_.email:
        found.add(parsed.from_.email.lower())
    return frozenset(found)


def ticket_reference(ticket_id: int, token: str, domain: str) -> str:
    """The fixed Message-ID reference that every reply on a ticket carries in References."""
    return 'ticket-%d-%s@%s' % (ticket_id, token, domain)


def header_candidates(parsed: ParsedMail) -> list[tuple[str, str]]:
    """(rule, message id) in the order they are tried: In-Reply-To, then References right to left."""
    found = [(IN_REPLY_TO, mid) for mid in parsed.in_reply_to]
    found += [(REFERENCES, mid) for mid in reversed(parsed.references)]
    return found


def is_automatic(parsed: ParsedMail) -> bool:
    return parsed.auto_submitted is not None or parsed.bounce is not None


def decide(parsed: ParsedMail, mailbox_id: int, follow_up: str, lookups: Lookups) -> ThreadDecision:
    matched = _match_headers(parsed, mailbox_id, lookups)
    if matched is None and parsed.bounce is not None:
        matched = _match_bounce(parsed, lookups)
        if matched is None:
            return ThreadDecision(BOUNCE, None, quarantine=_unknown_bounce_reason(parsed))
    if matched is None:
        matched = _match_subject_ref(parsed, mailbox_id, lookups)
    if matched is None:
        return ThreadDecision(NEW, None)
    return _follow_up(parsed, matched, follow_up, lookups)


def _match_headers(parsed: ParsedMail, mailbox_id: int, lookups: Lookups) -> ThreadDecision | None:
    for rule, message_id in header_candidates(parsed):
        ticket_id = lookups.ticket_of_message(message_id) or _ticket_from_reference(message_id, mailbox_id, lookups)
        if ticket_id is not None:
            return ThreadDecision(rule, ticket_id)
    return None


def _ticket_from_reference(message_id: str, mailbox_id: int, lookups: Lookups) -> int | None:
    found = _TICKET_REFERENCE.match(message_id)
    if not found:
        return None
    facts = lookups.ticket(int(found.group(1)))
    if facts and facts.mailbox_id == mailbox_id and facts.thread_token == found.group(2).lower():
        return facts.ticket_id
    return None


def referenced_ticket_ids(parsed: ParsedMail) -> list[int]:
    """Tickets a message names by fixed reference or subject reference (to fetch their facts in advance)."""
    ids = [int(m.group(1)) for _, mid in header_candidates(parsed) if (m := _TICKET_REFERENCE.match(mid))]
    ref = find_ref(parsed.subject)
    if ref is not None:
        ids.append(ref.ticket_id)
    return ids


def _match_bounce(parsed: ParsedMail, lookups: Lookups) -> ThreadDecision | None:
    original = parsed.bounce.original_message_id
    ticket_id = lookups.ticket_of_message(original) if original else None
    return ThreadDecision(BOUNCE, ticket_id) if ticket_id is not None else None


def _unknown_bounce_reason(parsed: ParsedMail) -> str:
    original = parsed.bounce.original_message_id
    if original:
        return 'delivery status notification about a message postdesk did not send (original Message-ID <%s>)' \
            % original
    return 'delivery status notification without the original message; cannot tell which ticket it is about'


def _match_subject_ref(parsed: ParsedMail, mailbox_id: int, lookups: Lookups) -> ThreadDecision | None:
    ref = find_ref(parsed.subject)
    if ref is None:
        return None
    facts = lookups.ticket(ref.ticket_id)
    if facts is None or facts.mailbox_id != mailbox_id:
        return ThreadDecision(NEW, None)          # a reference to a ticket that does not exist here
    sender = parsed.from_.email.lower() if parsed.from_ else ''
    if sender and (sender in facts.participants or lookups.is_agent(sender)):
        return ThreadDecision(SUBJECT_REF, facts.ticket_id)
    return ThreadDecision(NEW, None, connect_id=facts.ticket_id)   # hijack guard: a stranger quoting a reference


def _follow_up(parsed: ParsedMail, matched: ThreadDecision, follow_up: str, lookups: Lookups) -> ThreadDecision:
    if matched.ticket_id is None:
        return matched
    facts = lookups.ticket(matched.ticket_id)
    status = facts.base_status if facts else ACTIVE
    if status not in ENDED_BASE_STATUSES or is_automatic(parsed):
        return matched
    if status == DELETED or follow_up == 'new-ticket':
        return ThreadDecision(matched.rule, None, connect_id=matched.ticket_id)
    return ThreadDecision(matched.rule, matched.ticket_id, reopen=True)
