"""Intake, step 2: place. Which mailbox (or mailboxes) a prepared message goes to, by the one routing rule
(`ticketing.routing`): the mailbox an operator or client named; else each mailbox its envelope recipients name
(a message to two mailboxes makes a ticket in each); else the mailbox it was delivered to; else its headers.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..model import Mailbox
from ..routing import Directory, mailbox_for, mailboxes_for_recipients, route_by_headers
from .prepare import Prepared

NO_MAILBOX = 'no mailbox to deliver to: add one with `postdesk mailbox add ADDRESS`'


@dataclass(frozen=True)
class Placement:
    """A prepared message in one mailbox, or with the reason it cannot be stored (it goes to the quarantine)."""
    prepared: Prepared
    mailbox: Mailbox | None
    reason: str | None = None

    @property
    def hint(self) -> str | None:
        """The mailbox a quarantined message was for, so that a retry goes there."""
        if self.mailbox is not None:
            return self.mailbox.address
        message = self.prepared.message
        return message.mailbox or (message.envelope_to[0] if message.envelope_to else None)


def place(prepared: Prepared, directory: Directory, forced: Mailbox | None = None) -> list[Placement]:
    if prepared.reason is not None:
        return [Placement(prepared, forced, prepared.reason)]
    if forced is not None:
        return [Placement(prepared, forced)]
    recipients = prepared.message.envelope_to
    if recipients:
        return place_by_recipients(prepared, directory, recipients)
    mailbox = mailbox_for(directory, prepared.message.mailbox) or route_by_headers(directory, prepared.parsed)
    return [Placement(prepared, mailbox, None if mailbox else NO_MAILBOX)]


def place_by_recipients(prepared: Prepared, directory: Directory, recipients: tuple[str, ...]) -> list[Placement]:
    """One placement per mailbox the envelope names; none left (its mailbox was removed after the message was
    accepted): the quarantine says why."""
    mailboxes = mailboxes_for_recipients(directory, recipients)
    if not mailboxes:
        return [Placement(prepared, None, 'mailbox %s does not exist (any more)' % recipients[0])]
    return [Placement(prepared, mailbox) for mailbox in mailboxes]
