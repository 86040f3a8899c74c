"""Offering work (Genesys' routing, seed 001): a ready agent with spare capacity is offered the oldest queued
interaction of its queues; an invitation not answered in time, or to an agent who is no longer ready, goes back
to the queue, and the agent it was offered to is remembered so that it is offered to someone else first.

Each offer is one transaction that holds the agent's row and the interaction's row (both taken with SKIP
LOCKED), so any number of `postdesk serve` processes can offer at the same time on one database: an interaction
is never offered to two agents, and an agent never gets more than its capacity.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..formats.genesys import NEW_INTERACTION, STATUS_CHANGE
from ..model import Agent
from ..statuses import SYSTEM_MODIFIER, WORK_TRANSITIONS
from ..store import events, work
from ..store.db import Connection
from .work import Change, commit_change, tell


@dataclass(frozen=True)
class OfferSettings:
    invitation_timeout: float = 30.0      # seconds an agent has to accept or reject an invitation
    presence: float = 60.0                # seconds since an agent's client was last seen, for it to be offered work


def set_ready(conn: Connection, agent: Agent, ready: bool) -> None:
    """Ready or NotReady on the email channel; getting ready wakes the offering."""
    with conn.transaction():
        work.set_ready(conn, agent.agent_id, ready)
        if ready:
            events.notify(conn, events.WORK_CHANNEL)


def expire_invitations(conn: Connection, settings: OfferSettings) -> int:
    """Invitations past their time (or to agents no longer ready) go back to their queue."""
    with conn.transaction():
        expired = work.expired_invitations(conn, settings.invitation_timeout)
        change = Change(queued=bool(expired))
        transition = WORK_TRANSITIONS['Expire']
        for item in expired:
            work.change_work(conn, item, transition, SYSTEM_MODIFIER, None, invited_id=None, invited_at=None,
                             rejected_by=sorted(set(item.rejected_by) | {item.invited_id}))
            tell(conn, change, item.interaction_id, item.invited_id, STATUS_CHANGE)
        commit_change(conn, change)
    return len(expired)


def offer_to(conn: Connection, agent_id: int, settings: OfferSettings) -> int:
    """Offer queued interactions to one agent, up to its spare capacity; how many were offered."""
    with conn.transaction():
        found = work.lock_ready_agent(conn, agent_id, settings.presence)
        spare, login = found if found is not None else (0, None)
        change = Change()
        offered = 0
        while offered < spare:
            item = work.next_queued_for(conn, agent_id, settings.presence)
            if item is None:
                break
            work.change_work(conn, item, WORK_TRANSITIONS['Offer'], SYSTEM_MODIFIER, login, invited_id=agent_id,
                             invited_at=work.NOW)
            tell(conn, change, item.interaction_id, agent_id, NEW_INTERACTION)
            offered += 1
        if offered:
            work.note_offer(conn, agent_id)
        commit_change(conn, change)
    return offered


def offer_work(conn: Connection, settings: OfferSettings) -> int:
    """One round: expired invitations back to their queues, then an offer to every available agent."""
    expire_invitations(conn, settings)
    return sum(offer_to(conn, agent_id, settings) for agent_id in work.available_agents(conn, settings.presence))
