"""Which mailbox a message is for: the one rule used by SMTP and LMTP (at RCPT and in the spool worker), replay,
quarantine retry and CreateTicketFromMailData.

An address names a mailbox when it is the mailbox's address, compared case-insensitively, with or without a
`+tag` in the local part (RFC 5233 subaddressing: `support+billing@` is `support@`); otherwise the catch-all
mailbox of the address's domain takes it. A message without an envelope recipient is routed by its headers:
the first address in Delivered-To, X-Original-To, To, Cc that names a mailbox, else the default mailbox (the one
marked default, else the first created).
"""
from __future__ import annotations

import email.utils
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from ingest import ParsedMail

from .model import Mailbox

ROUTING_HEADERS = ('Delivered-To', 'X-Original-To')


@dataclass(frozen=True)
class Directory:
    """The mailboxes, indexed for routing."""
    mailboxes: tuple[Mailbox, ...]
    by_address: dict[str, Mailbox] = field(default_factory=dict, compare=False)
    catch_all_by_domain: dict[str, Mailbox] = field(default_factory=dict, compare=False)


def directory_of(mailboxes: Iterable[Mailbox]) -> Directory:
    listed = tuple(sorted(mailboxes, key=lambda m: m.mailbox_id))
    by_address = {m.address.lower(): m for m in listed}
    catch_all = {}
    for mailbox in listed:
        if mailbox.catch_all:
            catch_all.setdefault(domain_of(mailbox.address), mailbox)
    return Directory(listed, by_address, catch_all)


def domain_of(address: str) -> str:
    return address.rpartition('@')[2].lower()


def without_plus_tag(address: str) -> str:
    local, at, domain = address.rpartition('@')
    if not at:
        return address
    return local.split('+', 1)[0] + at + domain


def mailbox_for(directory: Directory, address: str | None) -> Mailbox | None:
    """The mailbox an address names: its own, without its +tag, or its domain's catch-all."""
    address = (address or '').strip().strip('<>').lower()
    if '@' not in address:
        return None
    return (directory.by_address.get(address) or directory.by_address.get(without_plus_tag(address))
            or directory.catch_all_by_domain.get(domain_of(address)))


def mailbox_named(directory: Directory, address: str) -> Mailbox | None:
    """The mailbox whose own address this is (no +tag, no catch-all): for an operator naming a mailbox."""
    return directory.by_address.get((address or '').strip().lower())


def default_mailbox(directory: Directory) -> Mailbox | None:
    for mailbox in directory.mailboxes:
        if mailbox.is_default:
            return mailbox
    return directory.mailboxes[0] if directory.mailboxes else None


def mailboxes_for_recipients(directory: Directory, recipients: Iterable[str]) -> list[Mailbox]:
    """Each mailbox the envelope recipients name, once, in the order named."""
    found: dict[int, Mailbox] = {}
    for rcpt in recipients:
        mailbox = mailbox_for(directory, rcpt)
        if mailbox is not None:
            found.setdefault(mailbox.mailbox_id, mailbox)
    return list(found.values())


def route_by_headers(directory: Directory, parsed: ParsedMail) -> Mailbox | None:
    """The first mailbox named in Delivered-To, X-Original-To, To, Cc; else the default mailbox."""
    for address in header_recipients(parsed):
        found = mailbox_for(directory, address)
        if found is not None:
            return found
    return default_mailbox(directory)


def header_recipients(parsed: ParsedMail) -> Iterator[str]:
    for header in ROUTING_HEADERS:
        for _, address in email.utils.getaddresses(parsed.header_all(header)):
            if address:
                yield address
    for address in list(parsed.to) + list(parsed.cc):
        if address.email:
            yield address.email
