"""Reply and ReplyAll (Genesys, seed 001): a draft reply to an interaction the agent owns, its subject with the
ticket's reference, its recipients and the quoted message prefilled, kept in the agent's Drafts workbin until it
is sent (iService's sendleaveopen/send) or abandoned (Cancel).
"""
from __future__ import annotations

import email.utils

from outbound.compose import ComposeError, compose_reply

from ..drafts import ReplyError, display_zone, draft_for
from ..formats.genesys import NEW_INTERACTION, PROPERTIES_UPDATED, STATUS_CHANGE
from ..model import Agent, Answer, WorkItem
from ..statuses import (AGENT_EMAIL, CANCELLED_STATUS, DRAFT, DRAFT_STATUS, INTERACTION_TARGET,
                        interaction_transition)
from ..store import interactions, queues, tickets, work
from ..store.db import Connection
from ..store.outbox import REPLY_KIND
from ..store.rows import outbound_row
from .work import Change, WorkError, checked, tell


def reply_recipients(conn: Connection, item: WorkItem, reply_all: bool, own_address: str) -> tuple[tuple, tuple]:
    """(To, Cc): the sender; with ReplyAll also everyone else the message went to, but the mailbox itself."""
    to = (email.utils.formataddr((item.from_name, item.from_email)),) if item.from_email else ()
    if not reply_all:
        return to, ()
    mine = {own_address.lower(), item.from_email.lower()}
    others = [a for a in work.recipients_of(conn, item.interaction_id) if a.lower() not in mine]
    return to, tuple(dict.fromkeys(others))


def start_reply(conn: Connection, agent: Agent, item: WorkItem, reply_all: bool, timezone: str) -> Change:
    transition = checked(conn, agent, item, 'ReplyAll' if reply_all else 'Reply')
    ticket = tickets.lock_ticket_for_reply(conn, item.ticket_id)
    question = interactions.find_question(conn, item.ticket_id, item.interaction_id)
    to, cc = reply_recipients(conn, item, reply_all, ticket.mailbox_address)
    draft_id = interactions.next_interaction_id(conn)
    try:
        draft = draft_for(ticket, question, Answer(ticket.ticket_id, '', dest_email=to, cc=cc, agent=agent.login),
                          draft_id, display_zone(timezone))
        composed = compose_reply(draft)
    except (ReplyError, ComposeError) as exc:
        raise WorkError('the reply cannot be started: %s' % exc, 422) from exc
    drafts_bin = next((w for w in queues.workbins_of(conn, agent.agent_id)
                       if w.agent_id == agent.agent_id and w.name == 'Drafts'), None)
    work.insert_draft(conn, outbound_row(ticket.mailbox_id, AGENT_EMAIL, REPLY_KIND, draft, composed, DRAFT_STATUS,
                                         user_data={'inResponseToID': item.interaction_id}),
                      agent.agent_id, item.interaction_id, drafts_bin.workbin_id if drafts_bin else None)
    started = interaction_transition('draft')
    interactions.add_audit(conn, ticket.ticket_id, draft_id, started.action, agent.login, None, started.after,
                           target=INTERACTION_TARGET, modifier_id=agent.agent_id)
    work.change_work(conn, item, transition, agent.login, agent.login)
    change = Change(result={'id': str(draft_id)})
    tell(conn, change, draft_id, agent.agent_id, NEW_INTERACTION)
    return change


MAX_SUBJECT = 998


def change_subject(conn: Connection, agent: Agent, item: WorkItem, subject) -> Change:
    """A draft's subject, as the agent edits it before sending."""
    transition = checked(conn, agent, item, 'UpdateUserData')
    if item.state != DRAFT:
        raise WorkError('only a draft reply has a subject to change')
    if not isinstance(subject, str) or len(subject) > MAX_SUBJECT:
        raise WorkError('subject must be text of at most %d characters' % MAX_SUBJECT, 400)
    work.change_work(conn, item, transition, agent.login, agent.login, subject=' '.join(subject.split()))
    change = Change()
    tell(conn, change, item.interaction_id, agent.agent_id, PROPERTIES_UPDATED)
    return change


def cancel(conn: Connection, agent: Agent, item: WorkItem) -> Change:
    """The draft is abandoned: nothing is sent, the draft stays on the ticket as Cancelled."""
    transition = checked(conn, agent, item, 'Cancel')
    work.change_work(conn, item, transition, agent.login, None, owner_id=None, workbin_id=None,
                     status=CANCELLED_STATUS)
    change = Change()
    tell(conn, change, item.interaction_id, agent.agent_id, STATUS_CHANGE)
    return change
