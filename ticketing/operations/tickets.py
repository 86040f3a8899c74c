"""An agent saves a ticket (SuperOffice's SaveTicketEntity, seed 002), in one transaction: a ticket no message
opened, or the fields that mean something here (Title, BaseStatus, Status, Category, Priority, OwnedBy, Tags,
Deadline, ConnectId, CustomFields), each change audited with the agent as its modifier.

OwnedBy 0 unassigns; 2147483647 assigns by the mailbox's rule: round robin among its active agents, fewest open
tickets first, picked under a per-mailbox lock so that concurrent saves never pick by a stale count. A save
with an If-Match that is no longer the ticket's ETag changes nothing (Request Tracker's answer to lost updates);
a save without one is applied.
"""
from __future__ import annotations

from ..formats.entities import etag_matches
from ..model import ROUND_ROBIN, UNASSIGNED, Agent, Tag, TicketRecord, TicketSave
from ..statuses import (ASSIGNED, CLOSED_BASE, FIELD_CHANGED, UNASSIGNED as UNASSIGNED_ACTION, TransitionError,
                        agent_transition, ticket_transition)
from ..store import agents, interactions, mailboxes, ticket_edits
from ..store.db import Connection
from ..store.tickets import TicketNotFound
from ..store.writes import NOW

MAX_ADDRESS = 254
_PLAIN_FIELDS = (('title', 'Title'), ('category', 'Category'), ('priority', 'Priority'), ('deadline', 'Deadline'),
                 ('connect_id', 'ConnectId'))


class StaleTicket(Exception):
    """The ticket changed since the client read it (If-Match no longer matches)."""


class BadSave(ValueError):
    """A save that cannot be made: an unknown agent or ticket named, a new ticket without a title or customer."""


def save_ticket(conn: Connection, agent: Agent, save: TicketSave, if_match: str | None = None) -> TicketRecord:
    """The saved ticket. Raises TicketNotFound (also for a ticket the agent may not see), StaleTicket, BadSave."""
    with conn.transaction():
        ticket_id = save.ticket_id or create_ticket(conn, agent, save)
        ticket = ticket_edits.lock_ticket(conn, ticket_id)
        if ticket is None or not agent.may_see(ticket.mailbox_id):
            raise TicketNotFound('no ticket %d' % ticket_id)
        if save.ticket_id and if_match is not None and not etag_matches(if_match, ticket):
            raise StaleTicket('ticket %d changed since it was read' % ticket_id)
        values, audits = status_change(ticket, save.changes)
        for change in (field_changes(conn, agent, ticket, save.changes), owner_change(conn, ticket, save.changes)):
            values.update(change[0])
            audits.extend(change[1])
        if values:
            ticket_edits.update_ticket(conn, ticket_id, values)
        for action, before, after in audits:
            interactions.add_audit(conn, ticket_id, None, action, agent.login, before, after,
                                   modifier_id=agent.agent_id)
        return ticket_edits.read_ticket(conn, ticket_id)


def create_ticket(conn: Connection, agent: Agent, save: TicketSave) -> int:
    """A ticket without a message (no mail is sent): a Title and the customer's address are required."""
    title = save.changes.get('title')
    email = save.person_email or save.from_address
    if not title or not email:
        raise BadSave('a new ticket needs a Title and a Person with an Email (or a FromAddress)')
    for address in {email, save.from_address or email}:
        check_address(address)
    mailbox = mailbox_for_new_ticket(conn, agent, save.mailbox_id)
    created = ticket_transition('agent_create')
    person_id = ticket_edits.person_for(conn, email, save.person_name)
    ticket_id = ticket_edits.insert_ticket(conn, mailbox.mailbox_id, title, created.after, created.base, person_id,
                                           save.from_address or email)
    ticket_edits.update_ticket(conn, ticket_id, {'category': save.changes.get('category', mailbox.category),
                                                 'priority': save.changes.get('priority', mailbox.priority)})
    interactions.add_audit(conn, ticket_id, None, created.action, agent.login, None, created.after,
                           modifier_id=agent.agent_id)
    return ticket_id


def check_address(address: str) -> None:
    """An address a ticket can be sent to: one @, no spaces or brackets, at most 254 characters (RFC 5321)."""
    if '@' not in address or any(c in address for c in ' \r\n<>'):
        raise BadSave('not an e-mail address: %r' % address)
    if len(address) > MAX_ADDRESS:
        raise BadSave('an e-mail address has at most %d characters, not %d' % (MAX_ADDRESS, len(address)))


def mailbox_for_new_ticket(conn: Connection, agent: Agent, mailbox_id: int | None):
    """The mailbox named (MailboxId), else the agent's first, else (an admin) the default one."""
    known = mailboxes.load_mailboxes(conn)
    visible = [m for m in known if agent.may_see(m.mailbox_id)]
    if mailbox_id is not None:
        visible = [m for m in visible if m.mailbox_id == mailbox_id]
    elif agent.is_admin:
        visible.sort(key=lambda m: not m.is_default)
    if not visible:
        raise BadSave('no mailbox %s for a new ticket' % (mailbox_id if mailbox_id is not None else ''))
    return visible[0]


def status_change(ticket: TicketRecord, changes: dict) -> tuple[dict, list]:
    try:
        transition = agent_transition(changes.get('status'), changes.get('base_status'), ticket.status)
    except TransitionError as exc:
        raise BadSave(str(exc)) from exc
    if transition is None:
        return {}, []
    closed_at = NOW if transition.base == CLOSED_BASE else None
    return ({'base_status': transition.base, 'status': transition.after, 'closed_at': closed_at},
            [(transition.action, ticket.status, transition.after)])


def named_tags(conn: Connection, agent: Agent, wanted: tuple[Tag, ...]) -> list[Tag]:
    """The tags a save names, each with its name, once each in their first order: a tag with a Name is the tag
    of that name (an Id beside it may be another system's, as in the seed's sample); one given by its Id alone
    is our tag with that Id, among those on tickets the agent may see. Raises BadSave for an Id alone that
    names none of those."""
    by_id = ticket_edits.tag_names(conn, [tag.tag_id for tag in wanted if not tag.name], agent.scope)
    named: dict[str, Tag] = {}
    for tag in wanted:
        name = tag.name or by_id.get(tag.tag_id)
        if not name:
            raise BadSave('Tags: no tag has Id %d' % tag.tag_id)
        kept = named.get(name)
        named[name] = Tag(None, name, tag.tooltip or (kept.tooltip if kept else ''))
    return list(named.values())


def field_changes(conn: Connection, agent: Agent, ticket: TicketRecord, changes: dict) -> tuple[dict, list]:
    values, audits = {}, []
    for column, name in _PLAIN_FIELDS:
        if column in changes and changes[column] != getattr(ticket, column):
            values[column] = changes[column]
            audits.append((FIELD_CHANGED % name, None, None))
    if values.get('connect_id') is not None and (values['connect_id'] == ticket.ticket_id or not
                                                 ticket_edits.ticket_exists(conn, values['connect_id'], agent.scope)):
        raise BadSave('ConnectId %s is not another ticket' % values['connect_id'])
    if 'tags' in changes:
        tags = named_tags(conn, agent, changes['tags'])
        ticket_edits.keep_tags(conn, tags)
        if tuple(tag.name for tag in tags) != tuple(tag.name for tag in ticket.tags):
            values['tags'] = [tag.name for tag in tags]
            audits.append((FIELD_CHANGED % 'Tags', None, None))
    if 'custom_fields' in changes:
        merged = {**ticket.custom_fields, **changes['custom_fields']}
        if merged != ticket.custom_fields:
            values['custom_fields'] = merged
            audits.append((FIELD_CHANGED % 'CustomFields', None, None))
    return values, audits


def owner_change(conn: Connection, ticket: TicketRecord, changes: dict) -> tuple[dict, list]:
    if 'owned_by' not in changes:
        return {}, []
    wanted = changes['owned_by']
    if wanted == UNASSIGNED:
        return ({'owned_by': None}, [(UNASSIGNED_ACTION, None, None)]) if ticket.owner_id else ({}, [])
    owner = agents.pick_round_robin(conn, ticket.mailbox_id) if wanted == ROUND_ROBIN else \
        agents.active_agent(conn, wanted)
    if owner is None or not owner.may_see(ticket.mailbox_id):
        raise BadSave('no active agent to assign' if wanted == ROUND_ROBIN else
                      'no active agent %d works for this ticket\'s mailbox' % wanted)
    if owner.agent_id == ticket.owner_id:
        return {}, []
    return {'owned_by': owner.agent_id}, [(ASSIGNED % owner.login, None, None)]
