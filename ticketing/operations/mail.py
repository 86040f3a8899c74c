"""A client hands postdesk a message (SuperOffice's CreateTicketFromMailData, seed 003): it is stored exactly as
`replay --mailbox` stores it (routing to the mailbox named, dedupe, threading, hijack guard, quarantine,
acknowledgement), through the same intake.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ..config import Config
from ..intake import Intake
from ..model import QUARANTINED, Agent, Mailbox, Outcome, SourceMessage
from ..store import mailboxes, quarantine
from ..store.db import Connection

API_SOURCE = 'api'


class UnknownMailboxId(LookupError):
    """No mailbox with that id (or none the agent works for)."""


@dataclass(frozen=True)
class MailResult:
    """What became of the message, and where it is held when it was quarantined."""
    outcome: Outcome
    quarantine_id: int | None = None


def mailbox_by_id(conn: Connection, agent: Agent, mailbox_id: int) -> Mailbox:
    for mailbox in mailboxes.load_mailboxes(conn):
        if mailbox.mailbox_id == mailbox_id and agent.may_see(mailbox_id):
            return mailbox
    raise UnknownMailboxId('no mailbox %d' % mailbox_id)


def create_from_mail(conn: Connection, config: Config, agent: Agent, mailbox_id: int, data: bytes) -> MailResult:
    """Store the message in the mailbox; a message that cannot become a ticket is quarantined (with its id).
    Raises UnknownMailboxId."""
    mailbox = mailbox_by_id(conn, agent, mailbox_id)
    outcome = Intake(conn, config, mailbox).store_batch([SourceMessage(data, API_SOURCE)])[0]
    if outcome.outcome != QUARANTINED:
        return MailResult(outcome)
    return MailResult(outcome, quarantine.held_id(conn, hashlib.sha256(data).digest()))
