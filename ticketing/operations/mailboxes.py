"""Mailbox changes: adding a mailbox (idempotent, like `mkdir -p`, so scripts can run it every time) and turning
its automatic acknowledgements on or off."""
from __future__ import annotations

from dataclasses import dataclass

from ..drafts import AckError, check_template
from ..model import Mailbox
from ..routing import directory_of, mailbox_named
from ..store import mailboxes
from ..store.db import Connection


class UnknownMailbox(LookupError):
    """No mailbox has that address."""


@dataclass(frozen=True)
class MailboxRequest:
    address: str
    name: str = ''
    category: str = ''
    priority: str = 'Medium'
    follow_up: str = 'reopen'
    is_default: bool = False
    catch_all: bool = False


def find_mailbox(conn: Connection, address: str) -> Mailbox:
    """The mailbox with this address (compared case-insensitively). Raises UnknownMailbox."""
    found = mailbox_named(directory_of(mailboxes.load_mailboxes(conn)), address)
    if found is None:
        raise UnknownMailbox('no mailbox %s (add it with `postdesk mailbox add %s`)' % (address, address))
    return found


def add_mailbox(conn: Connection, request: MailboxRequest) -> tuple[Mailbox, bool]:
    """The mailbox, and whether it was added now (False: it existed already and is unchanged)."""
    try:
        return find_mailbox(conn, request.address), False
    except UnknownMailbox:
        pass
    return mailboxes.add_mailbox(conn, request.address, request.name, request.category, request.priority,
                                 request.follow_up, request.is_default, request.catch_all), True


def set_acknowledgements(conn: Connection, address: str, template: str | None) -> Mailbox:
    """Acknowledge each new ticket of the mailbox with this template (None: stop). Raises AckError for a
    template that could never be filled in, UnknownMailbox for an unknown address."""
    mailbox = find_mailbox(conn, address)
    if template is not None:
        check_template(template)
    mailboxes.set_ack_template(conn, mailbox.mailbox_id, template)
    return mailbox


__all__ = ['AckError', 'MailboxRequest', 'UnknownMailbox', 'add_mailbox', 'find_mailbox', 'set_acknowledgements']
