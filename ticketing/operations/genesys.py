"""The operations of `POST /api/v2/me/interactions/{id}` and of `POST /api/v2/me/workbins/{id}` (Genesys,
seeds 001 and 004), by operation name, each in one transaction; and the agents' reads of their work.
"""
from __future__ import annotations

from ..model import Agent
from ..statuses import ACTIVE_WORK_STATES, WORK_STATES
from ..store import queues, work
from ..store.db import Connection
from ..formats.genesys import interaction_json, success_body
from . import reply_drafts
from .work import (Change, NotFound, WorkError, accept, change_user_data, commit_change, complete, find_workbin,
                   place_in_queue, place_in_workbin, pull, reject, roles_of, transfer, visible_item,
                   workbin_content)

INTERACTION_OPERATIONS = ('Accept', 'Reject', 'Cancel', 'Complete', 'PlaceInQueue', 'UpdateUserData',
                          'AttachUserData', 'DeleteUserData', 'PlaceInWorkbin', 'GetWorkbinContent', 'Transfer',
                          'Reply', 'ReplyAll')
PULL_OPERATIONS = ('PullInteraction', 'PullEmail', 'PullChat', 'PullWorkitem', 'PullTweet', 'PullFacebook',
                   'PullFacebooksession', 'PullOpenmedia')


def operation_name(body) -> str:
    name = body.get('operationName') if isinstance(body, dict) else None
    if name == 'SingleStepTransfer':
        return 'Transfer'
    return name if isinstance(name, str) else ''


def dispatch(conn: Connection, agent: Agent, interaction_id: int, name: str, body: dict,
             timezone: str) -> Change:
    if name == 'GetWorkbinContent':
        return workbin_content(conn, agent, body.get('workbin'))
    item = visible_item(conn, agent, interaction_id)
    simple = {'Accept': accept, 'Reject': reject, 'Complete': complete, 'Cancel': reply_drafts.cancel}
    if name in simple:
        return simple[name](conn, agent, item)
    if name == 'PlaceInQueue':
        return place_in_queue(conn, agent, item, body.get('queueName'))
    if name == 'PlaceInWorkbin':
        return place_in_workbin(conn, agent, item, body.get('workbin'))
    if name == 'Transfer':
        return transfer(conn, agent, item, body.get('userId'))
    if name in ('UpdateUserData', 'AttachUserData', 'DeleteUserData'):
        return change_user_data(conn, agent, item, name, body.get('userData', body.get('keys')))
    if name in ('Reply', 'ReplyAll'):
        return reply_drafts.start_reply(conn, agent, item, name == 'ReplyAll', timezone)
    raise WorkError('unknown operationName %r' % name, 400)


def perform(conn: Connection, agent: Agent, interaction_id: int, body: dict, timezone: str = 'UTC') -> dict:
    """Carry out one operation on an interaction: the seed's success body for it. Raises WorkError (nothing
    changed) when it cannot be."""
    name = operation_name(body)
    with conn.transaction():
        work.mark_seen(conn, agent.agent_id)
        result = commit_change(conn, dispatch(conn, agent, interaction_id, name, body, timezone))
    return dict(success_body(name), **result)


def pull_from_workbin(conn: Connection, agent: Agent, workbin_id: str, body: dict) -> dict:
    """PullInteraction and its siblings from a workbin the agent sees: `referenceId` grows per request."""
    name = operation_name(body)
    if name not in PULL_OPERATIONS:
        raise WorkError('unknown operationName %r' % name, 400)
    with conn.transaction():
        workbin = find_workbin(conn, agent, workbin_id)
        commit_change(conn, pull(conn, agent, workbin, body.get('id')))
        reference = queues.next_request_reference(conn)
    return {'statusCode': 0, 'referenceId': reference}


def my_interactions(conn: Connection, agent: Agent) -> list[dict]:
    """The interactions offered to or owned by the agent, as the notifications carry them."""
    work.mark_seen(conn, agent.agent_id)
    return [interaction_json(item, roles_of(conn, item, agent.agent_id))
            for item in work.work_items(conn, ACTIVE_WORK_STATES, agent.agent_id) if agent.may_see(item.mailbox_id)]


def all_interactions(conn: Connection, agent: Agent) -> list[dict]:
    """Every active interaction the agent may see (Contact Center Admin: all of them)."""
    return [interaction_json(item, roles_of(conn, item, agent.agent_id))
            for item in work.work_items(conn, ACTIVE_WORK_STATES) if agent.may_see(item.mailbox_id)]


def update_interaction(conn: Connection, agent: Agent, interaction_id: int, user_data, subject) -> dict:
    """PUT on an interaction: its user data (merged, as UpdateUserData) and, for a draft, its subject."""
    with conn.transaction():
        work.mark_seen(conn, agent.agent_id)
        item = visible_item(conn, agent, interaction_id)
        change = Change()
        if user_data is not None:
            change = change_user_data(conn, agent, item, 'UpdateUserData', user_data)
        if subject is not None:
            item = work.work_item(conn, interaction_id, lock=True)
            change.events.extend(reply_drafts.change_subject(conn, agent, item, subject).events)
        commit_change(conn, change)
    return {'statusCode': 0}


def interaction_view(conn: Connection, agent: Agent, interaction_id: int) -> dict:
    item = visible_item(conn, agent, interaction_id, lock=False)
    return interaction_json(item, roles_of(conn, item, agent.agent_id))


__all__ = ['NotFound', 'WorkError', 'WORK_STATES', 'perform', 'pull_from_workbin', 'my_interactions',
           'all_interactions', 'interaction_view']
