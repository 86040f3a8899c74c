"""The agents' work on interactions (Genesys Interactions API, seed 001; Workbins, seed 004): Accept, Reject,
Complete, PlaceInQueue, PlaceInWorkbin, Transfer, the user data operations, Reply/ReplyAll/Cancel of drafts,
GetWorkbinContent and Pull from a workbin; being Ready or NotReady; and offering queued work to ready agents.

One call, one transaction: the interaction's row is locked, the transition table (`ticketing.statuses`) decides
whether the operation is valid from its state and for this agent, the change is audited with the agent as
modifier, and the events the agents' clients are sent are written in the same transaction. An interaction of a
mailbox the agent does not belong to is reported exactly as one that does not exist.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..formats.genesys import (INTERACTIONS_CHANNEL, NEW_INTERACTION, PROPERTIES_UPDATED, STATUS_CHANGE,
                               WORKBINS_CHANNEL, interaction_json, interaction_message, workbin_content_message,
                               workbin_json, workbin_message)
from ..model import Agent, WorkItem, Workbin
from ..statuses import (GROUP_MEMBER, IN_WORKBIN, INVITEE, OWNER, WORK_TRANSITIONS, WorkTransition)
from ..store import events, queues, work
from ..store.agents import agent_by_login_or_id
from ..store.db import Connection

MAX_USER_DATA_BYTES = 64 * 1024


class WorkError(Exception):
    """The operation cannot be carried out; nothing was changed. `status` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 409):
        super().__init__(message)
        self.status = status


class NotFound(WorkError):
    def __init__(self, what: str):
        super().__init__('%s not found' % what, 404)


@dataclass
class Change:
    """What one operation did: the events to write with it, and whether an offer may be due now (work was queued,
    or an agent has room for more)."""
    events: list[tuple[int, str, dict]] = field(default_factory=list)
    queued: bool = False
    result: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------- finding things

def visible_item(conn: Connection, agent: Agent, interaction_id: int, lock: bool = True) -> WorkItem:
    item = work.work_item(conn, interaction_id, lock=lock)
    if item is None or not agent.may_see(item.mailbox_id):
        raise NotFound('interaction %s' % interaction_id)
    return item


def roles_of(conn: Connection, item: WorkItem, agent_id: int) -> frozenset[str]:
    roles = set()
    if item.owner_id == agent_id:
        roles.add(OWNER)
    if item.invited_id == agent_id:
        roles.add(INVITEE)
    if item.state == IN_WORKBIN and item.workbin_id is not None:
        workbin = queues.workbin_by_id(conn, item.workbin_id)
        if workbin is not None and agent_id in queues.workbin_members(conn, workbin):
            roles.add(GROUP_MEMBER)
    return frozenset(roles)


def checked(conn: Connection, agent: Agent, item: WorkItem, name: str) -> WorkTransition:
    """The transition, when the table allows it from the item's state for this agent; else WorkError."""
    transition = WORK_TRANSITIONS[name]
    if item.state not in transition.before:
        raise WorkError('%s is not possible for an interaction in state %s' % (name, item.state))
    if transition.actor not in roles_of(conn, item, agent.agent_id):
        raise WorkError('%s needs the interaction to be %s' % (
            name, {OWNER: 'yours', INVITEE: 'offered to you', GROUP_MEMBER: 'in a workbin of yours'}[
                transition.actor]))
    return transition


def find_workbin(conn: Connection, agent: Agent, identifier) -> Workbin:
    """A workbin the agent sees, by id or by name."""
    text = str(identifier or '').strip()
    for workbin in queues.workbins_of(conn, agent.agent_id):
        if text == str(workbin.workbin_id) or text.lower() == workbin.name.lower():
            return workbin
    raise NotFound('workbin %s' % text)


# ---------------------------------------------------------------------------------------- telling agents

def tell(conn: Connection, change: Change, item_id: int, agent_id: int | None, notification: str) -> None:
    """An InteractionStateChangeMessage for one agent, with the interaction as that agent sees it now."""
    if agent_id is None:
        return
    item = work.work_item(conn, item_id)
    change.events.append((agent_id, INTERACTIONS_CHANNEL, interaction_message(
        notification, interaction_json(item, roles_of(conn, item, agent_id)))))


def tell_workbin(conn: Connection, change: Change, workbin: Workbin, action: str, item_id: int) -> None:
    """ItemAdded / ItemRemoved for every agent who sees the workbin and works for the interaction's mailbox."""
    item = work.work_item(conn, item_id)
    for member in queues.workbin_members(conn, workbin, item.mailbox_id):
        change.events.append((member, WORKBINS_CHANNEL, workbin_message(
            action, workbin, interaction_json(item, roles_of(conn, item, member)))))


def commit_change(conn: Connection, change: Change) -> dict:
    """Write the change's events (and wake the offering when work was queued); the caller's transaction ends."""
    events.add_events(conn, change.events)
    if change.queued:
        events.notify(conn, events.WORK_CHANNEL)
    return change.result


# ------------------------------------------------------------------------------------------ operations

def accept(conn: Connection, agent: Agent, item: WorkItem) -> Change:
    change = Change()
    work.change_work(conn, item, checked(conn, agent, item, 'Accept'), agent.login, agent.login,
                     owner_id=agent.agent_id, invited_id=None, invited_at=None)
    tell(conn, change, item.interaction_id, agent.agent_id, STATUS_CHANGE)
    return change


def reject(conn: Connection, agent: Agent, item: WorkItem) -> Change:
    change = Change(queued=True)
    work.change_work(conn, item, checked(conn, agent, item, 'Reject'), agent.login, None, invited_id=None,
                     invited_at=None, rejected_by=sorted(set(item.rejected_by) | {agent.agent_id}))
    tell(conn, change, item.interaction_id, agent.agent_id, STATUS_CHANGE)
    return change


def complete(conn: Connection, agent: Agent, item: WorkItem) -> Change:
    change = Change(queued=True)          # the agent has room for the next one: offering wakes
    work.change_work(conn, item, checked(conn, agent, item, 'Complete'), agent.login, None, owner_id=None)
    tell(conn, change, item.interaction_id, agent.agent_id, STATUS_CHANGE)
    return change


def place_in_queue(conn: Connection, agent: Agent, item: WorkItem, queue_name) -> Change:
    transition = checked(conn, agent, item, 'PlaceInQueue')
    queue_id = queues.queue_id_named(conn, str(queue_name or ''))
    if queue_id is None:
        raise NotFound('queue %s' % queue_name)
    if not queues.queue_serves_mailbox(conn, queue_id, item.mailbox_id):
        raise WorkError('queue %s is the queue of another mailbox' % queue_name)
    change = Change(queued=True)
    work.change_work(conn, item, transition, agent.login, None, owner_id=None, queue_id=queue_id, rejected_by=[])
    tell(conn, change, item.interaction_id, agent.agent_id, STATUS_CHANGE)
    return change


def place_in_workbin(conn: Connection, agent: Agent, item: WorkItem, workbin_id) -> Change:
    transition = checked(conn, agent, item, 'PlaceInWorkbin')
    workbin = find_workbin(conn, agent, workbin_id)
    change = Change(queued=True)
    work.change_work(conn, item, transition, agent.login, None, owner_id=None, workbin_id=workbin.workbin_id)
    tell(conn, change, item.interaction_id, agent.agent_id, STATUS_CHANGE)
    tell_workbin(conn, change, workbin, 'ItemAdded', item.interaction_id)
    return change


def transfer(conn: Connection, agent: Agent, item: WorkItem, user_id) -> Change:
    transition = checked(conn, agent, item, 'Transfer')
    target = agent_by_login_or_id(conn, str(user_id or ''))
    if target is None or not target.active or not target.may_see(item.mailbox_id):
        raise NotFound('agent %s' % user_id)
    if target.agent_id == agent.agent_id:
        raise WorkError('the interaction is yours already', 400)
    change = Change(queued=True)
    work.change_work(conn, item, transition, agent.login, target.login, owner_id=target.agent_id)
    tell(conn, change, item.interaction_id, agent.agent_id, STATUS_CHANGE)
    tell(conn, change, item.interaction_id, target.agent_id, NEW_INTERACTION)
    return change


def change_user_data(conn: Connection, agent: Agent, item: WorkItem, name: str, user_data) -> Change:
    """UpdateUserData and AttachUserData merge the keys given; DeleteUserData removes them."""
    transition = checked(conn, agent, item, name)
    if not isinstance(user_data, (dict, list)):
        raise WorkError('userData must be an object', 400)
    if name == 'DeleteUserData':
        if isinstance(user_data, list) and not all(isinstance(key, str) for key in user_data):
            raise WorkError('userData of DeleteUserData is an object, or a list of the keys to delete', 400)
        keys = set(user_data)
        merged = {k: v for k, v in item.user_data.items() if k not in keys}
    else:
        merged = dict(item.user_data, **user_data) if isinstance(user_data, dict) else None
        if merged is None:
            raise WorkError('userData must be an object', 400)
    if len(json.dumps(merged)) > MAX_USER_DATA_BYTES:
        raise WorkError('userData is larger than %d bytes' % MAX_USER_DATA_BYTES, 413)
    change = Change()
    work.change_work(conn, item, transition, agent.login, agent.login, user_data=work.user_data_json(merged))
    tell(conn, change, item.interaction_id, agent.agent_id, PROPERTIES_UPDATED)
    return change


def workbin_content(conn: Connection, agent: Agent, workbin_id) -> Change:
    """GetWorkbinContent: the content comes to the agent as a notification."""
    workbin = find_workbin(conn, agent, workbin_id)
    content = visible_content(conn, agent, workbin)
    return Change(events=[(agent.agent_id, WORKBINS_CHANNEL, workbin_content_message(workbin, content))])


def pull(conn: Connection, agent: Agent, workbin: Workbin, interaction_id) -> Change:
    """Take an interaction out of a workbin the agent sees: it becomes the agent's (seed 004)."""
    try:
        item = visible_item(conn, agent, int(interaction_id))
    except (TypeError, ValueError):
        raise NotFound('interaction %s' % interaction_id) from None
    if item.workbin_id != workbin.workbin_id:
        raise WorkError('interaction %s is not in workbin %s' % (interaction_id, workbin.workbin_id))
    change = Change()
    work.change_work(conn, item, checked(conn, agent, item, 'Pull'), agent.login, agent.login,
                     owner_id=agent.agent_id, workbin_id=None)
    tell_workbin(conn, change, workbin, 'ItemRemoved', item.interaction_id)
    tell(conn, change, item.interaction_id, agent.agent_id, NEW_INTERACTION)
    return change


def workbin_view(conn: Connection, agent: Agent, workbin: Workbin) -> dict:
    return workbin_json(workbin, visible_content(conn, agent, workbin))


def visible_content(conn: Connection, agent: Agent, workbin: Workbin) -> list[dict]:
    """The workbin's interactions of the mailboxes the agent works for, as that agent sees them."""
    return [interaction_json(i, roles_of(conn, i, agent.agent_id))
            for i in queues.workbin_content(conn, workbin.workbin_id) if agent.may_see(i.mailbox_id)]
