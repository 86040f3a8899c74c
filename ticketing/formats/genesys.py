"""Genesys Web Services JSON (seeds 001 and 004): the interaction resource (as `GET /api/v2/interactions/{id}`
answers it and as the CometD messages carry it), InteractionStateChangeMessage, WorkbinStateChangeMessage, the
workbin resource, and each operation's success and failure bodies exactly as the seed writes them.
"""
from __future__ import annotations

from ..model import WorkItem, Workbin
from ..statuses import capabilities
from .dates import iso

INTERACTION_MESSAGE, WORKBIN_MESSAGE = 'InteractionStateChangeMessage', 'WorkbinStateChangeMessage'
WORKBIN_CONTENT_MESSAGE = 'WorkbinContentMessage'
NEW_INTERACTION, STATUS_CHANGE, PROPERTIES_UPDATED = 'NewInteraction', 'StatusChange', 'PropertiesUpdated'
INTERACTIONS_CHANNEL, WORKBINS_CHANNEL = '/v2/me/interactions', '/v2/me/workbins'

# The seed's bodies, by operation: Accept, Reject, PlaceInQueue, the user data operations, PlaceInWorkbin and
# GetWorkbinContent answer status ok/error; Cancel answers status 0; Complete and Transfer answer statusCode.
STATUS_OPERATIONS = frozenset({'Accept', 'Reject', 'PlaceInQueue', 'UpdateUserData', 'AttachUserData',
                               'DeleteUserData', 'PlaceInWorkbin', 'GetWorkbinContent'})
STATUS_CODE_OPERATIONS = frozenset({'Complete', 'Transfer', 'Reply', 'ReplyAll'})


def interaction_path(interaction_id: int) -> str:
    return '/api/v2/interactions/%d' % interaction_id


def interaction_json(item: WorkItem, roles: frozenset[str], base_url: str = '') -> dict:
    """The interaction resource; `capabilities` are the operations valid now for an agent in these roles."""
    sender = {'name': item.from_name, 'address': item.from_email} if item.from_email else None
    return {
        'id': str(item.interaction_id), 'uri': base_url + interaction_path(item.interaction_id),
        'path': '/interactions/%d' % item.interaction_id, 'mediaType': 'email',
        'interactionType': 'Outbound' if item.direction == 'outbound' else 'Inbound',
        'state': item.state, 'capabilities': capabilities(item.state, roles), 'subject': item.subject,
        'from': sender, 'to': [a.get('email', '') for a in item.to_addresses], 'userData': item.user_data,
        'receivedDate': iso(item.received_at), 'queue': item.queue_name,
        'workbin': str(item.workbin_id) if item.workbin_id is not None else None,
        'ticketId': item.ticket_id, 'parentId': str(item.parent_id) if item.parent_id else None,
    }


def interaction_message(notification_type: str, interaction: dict) -> dict:
    return {'messageType': INTERACTION_MESSAGE, 'notificationType': notification_type, 'interaction': interaction}


def workbin_group_fields(workbin: Workbin) -> dict:
    if workbin.agent_group:
        return {'agentGroup': workbin.agent_group}
    if workbin.place_group:
        return {'placeGroup': workbin.place_group}
    return {}


def workbin_message(action: str, workbin: Workbin, interaction: dict) -> dict:
    """ItemAdded / ItemRemoved, with the agentGroup or placeGroup the workbin belongs to (seed 004)."""
    return {'action': action, **workbin_group_fields(workbin), 'emailStateResourceV2': interaction,
            'id': str(workbin.workbin_id), 'messageType': WORKBIN_MESSAGE}


def workbin_json(workbin: Workbin, content: list[dict] | None = None) -> dict:
    found = {'id': str(workbin.workbin_id), 'name': workbin.name,
             'type': 'AgentGroup' if workbin.agent_group else 'PlaceGroup' if workbin.place_group else 'Agent',
             **workbin_group_fields(workbin)}
    if content is not None:
        found['interactions'] = content
    return found


def workbin_content_message(workbin: Workbin, content: list[dict]) -> dict:
    return {'messageType': WORKBIN_CONTENT_MESSAGE, 'id': str(workbin.workbin_id), 'name': workbin.name,
            **workbin_group_fields(workbin), 'interactions': content}


def success_body(operation: str) -> dict:
    if operation == 'Cancel':
        return {'status': 0}
    if operation in STATUS_CODE_OPERATIONS:
        return {'statusCode': 0}
    return {'status': 'ok'}


def failure_body(operation: str, description: str, code: int = 1) -> dict:
    if operation in STATUS_OPERATIONS:
        return {'status': 'error', 'errorDescription': description}
    return {'statusCode': max(code, 1), 'statusMessage': description}
