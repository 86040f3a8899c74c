"""A client hands postdesk a message (SuperOffice's CreateTicketFromMailData, seed 003): it is stored exactly as
`replay --mailbox` stores it (routing to the mailbox named, dedupe, threading, hijack guard, quarantine,
acknowledgement), through the same intake.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ingest.headers import raw_message_id

from ..config import Config
from ..intake import Intake
from ..intake.parse_ahead import ParseResult, parse_raw
from ..intake.prepare import identity_digest
from ..model import DUPLICATE, QUARANTINED, Agent, Mailbox, Outcome, SourceMessage
from ..routing import directory_of
from ..store import batches, mailboxes, quarantine
from ..store.db import Connection
from ..threads import derived_message_id, normalize_message_id

API_SOURCE = 'api'


class UnknownMailboxId(LookupError):
    """No mailbox with that id (or none the agent works for)."""


@dataclass(frozen=True)
class MailResult:
    """What became of the message, and where it is held when it was quarantined."""
    outcome: Outcome
    quarantine_id: int | None = None


@dataclass(frozen=True)
class MailRequest:
    """One CreateTicketFromMailData: who asks, for which mailbox, with which bytes (and what parsing them gave,
    when the caller knows it already: a message that crashed the parser)."""
    agent: Agent
    mailbox_id: int
    data: bytes
    parsed: ParseResult | None = None

    def source(self) -> SourceMessage:
        return SourceMessage(self.data, API_SOURCE, handed_in_by=self.agent.login,
                             handed_in_by_id=self.agent.agent_id)


def mailbox_by_id(known: list[Mailbox], agent: Agent, mailbox_id: int) -> Mailbox:
    for mailbox in known:
        if mailbox.mailbox_id == mailbox_id and agent.may_see(mailbox_id):
            return mailbox
    raise UnknownMailboxId('no mailbox %d' % mailbox_id)


def create_from_mail(conn: Connection, config: Config, agent: Agent, mailbox_id: int, data: bytes) -> MailResult:
    """Store the message in the mailbox; a message that cannot become a ticket is quarantined (with its id).
    Raises UnknownMailboxId."""
    [result] = create_from_mails(conn, config, [MailRequest(agent, mailbox_id, data)])
    if isinstance(result, UnknownMailboxId):
        raise result
    return result


def create_from_mails(conn: Connection, config: Config,
                      requests: list[MailRequest]) -> list[MailResult | UnknownMailboxId]:
    """Several messages at once, each in the mailbox its request names: those of one mailbox are stored as one
    batch (one transaction, as replay's batches; a message that fails costs only itself). The results in the
    order of the requests; an UnknownMailboxId for a request whose mailbox does not exist for its agent."""
    known = mailboxes.load_mailboxes(conn)
    directory = directory_of(known)
    results: list[MailResult | UnknownMailboxId | None] = [None] * len(requests)
    by_mailbox: dict[int, list[int]] = {}
    for index, request in enumerate(requests):
        try:
            by_mailbox.setdefault(mailbox_by_id(known, request.agent, request.mailbox_id).mailbox_id, []).append(index)
        except UnknownMailboxId as exc:
            results[index] = exc
    for mailbox_id, indexes in by_mailbox.items():
        mailbox = mailbox_by_id(known, requests[indexes[0]].agent, mailbox_id)
        intake = Intake(conn, config, mailbox, directory)
        sources = [requests[i].source() for i in indexes]
        outcomes = intake.store_parsed(sources, [requests[i].parsed or parse_raw(source.sent, intake.limits)
                                                 for i, source in zip(indexes, sources)])
        for index, outcome in zip(indexes, outcomes):
            results[index] = result_of(conn, outcome, requests[index].data)
    return results


def result_of(conn: Connection, outcome: Outcome, data: bytes) -> MailResult:
    if outcome.outcome != QUARANTINED:
        return MailResult(outcome)
    return MailResult(outcome, quarantine.held_id(conn, hashlib.sha256(data).digest()))


def stored_already(conn: Connection, request: MailRequest) -> MailResult | None:
    """What became of a message whose worker died once its batch had committed (so that it is not quarantined
    as a crash when it was stored): found by the Message-ID it would be stored under, read from its header
    section without the parser, or made from its bytes when it has none. None when it is not stored."""
    try:
        mailbox = mailbox_by_id(mailboxes.load_mailboxes(conn), request.agent, request.mailbox_id)
    except UnknownMailboxId:
        return None
    named = raw_message_id(request.data)
    candidates = [normalize_message_id(named)] if named else []
    candidates.append(derived_message_id(identity_digest(request.source())))
    known, _ = batches.thread_lookups(conn, mailbox.mailbox_id, candidates, [])
    if not known:
        return None
    message_id, (ticket_id, interaction_id) = next(iter(known.items()))
    _, summaries = batches.ticket_facts(conn, [ticket_id])
    return MailResult(Outcome(API_SOURCE, DUPLICATE, summaries.get(ticket_id), interaction_id, None,
                              'already stored under Message-ID <%s>' % message_id, message_id, mailbox.address))
