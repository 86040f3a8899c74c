"""Genesys' half of the API (seeds 001 and 004): the agent's email channel (Ready, NotReady), interactions (all,
the agent's own, one), the operations on an interaction, workbins and Pull from a group workbin.

Every operation runs in a thread on a connection of its own (`ticketing.operations.genesys`, one transaction
each) and answers the seed's body for that operation: `{"status":"ok"}` or `{"status":"error",
"errorDescription":...}` for Accept, Reject, PlaceInQueue, the user data operations, PlaceInWorkbin and
GetWorkbinContent; `{"status":0}` for Cancel; `{"statusCode":0}` or `{"statusCode":N,"statusMessage":...}` for
Complete, Transfer and the rest. An interaction the agent may not see is answered as one that does not exist.
"""
from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Query, Request

from ..formats.genesys import failure_body
from ..model import Agent
from ..operations import genesys
from ..operations.offering import set_ready
from ..operations.work import NotFound, WorkError, find_workbin, workbin_view
from ..store import queues
from . import schemas
from .app import SECURITY, json_response, require_json, run_operation, state_of
from .auth import current_agent

MAX_ID = schemas.MAX_ID
ERRORS = {status: {'model': schemas.GenesysBody, 'description': text} for status, text in (
    (400, 'The operation is not one of this resource'), (401, 'Missing or wrong credentials'),
    (404, 'No such interaction or workbin, or not yours'),
    (409, 'The interaction is not in a state (or not yours) for this operation'),
    (413, 'Body too large'), (415, 'Body is not JSON'), (422, 'The reply cannot be started'),
    (429, 'Too many failed sign-ins'), (503, 'The database cannot be reached now'))}
OK = {200: {'model': schemas.GenesysBody, 'description': 'Done'}, **ERRORS}

router = APIRouter(prefix='/api/v2')


async def answer(request: Request, operation: str, call, *args):
    """Run an operation; its failure becomes the seed's failure body for that operation, with its status."""
    try:
        return json_response(await run_operation(request, call, *args))
    except WorkError as exc:
        return json_response(failure_body(operation, str(exc), 1), exc.status)


@router.post('/me/channels/email', response_model=None, openapi_extra=SECURITY, responses=OK,
             dependencies=[Depends(require_json)])
async def email_channel(request: Request, body: schemas.GenesysOperation, agent: Agent = Depends(current_agent)):
    name = body.operationName
    if name not in ('Ready', 'NotReady'):
        return json_response(failure_body(name, 'the email channel takes Ready or NotReady'), 400)
    await run_operation(request, set_ready, agent, name == 'Ready')
    return json_response({'statusCode': 0})


@router.get('/interactions', response_model=None, openapi_extra=SECURITY, responses=OK)
async def all_interactions(request: Request, agent: Agent = Depends(current_agent)):
    found = await run_operation(request, genesys.all_interactions, agent)
    return json_response({'statusCode': 0, 'interactions': found})


@router.get('/me/interactions', response_model=None, openapi_extra=SECURITY, responses=OK)
async def my_interactions(request: Request, fields: str | None = Query(None, max_length=64),
                          agent: Agent = Depends(current_agent)):
    found = await run_operation(request, genesys.my_interactions, agent)
    if fields == '*':
        return json_response({'statusCode': 0, 'interactions': found})
    base = str(request.base_url).rstrip('/')
    return json_response({'statusCode': 0, 'uris': [base + '/api/v2/interactions/%s' % i['id'] for i in found]})


@router.get('/interactions/{interaction_id}', response_model=None, openapi_extra=SECURITY, responses=OK)
async def one_interaction(request: Request, interaction_id: schemas.ResourceId,
                          agent: Agent = Depends(current_agent)):
    try:
        found = await run_operation(request, genesys.interaction_view, agent, interaction_id)
    except NotFound as exc:
        return json_response({'statusCode': 1, 'statusMessage': str(exc)}, 404)
    return json_response({'statusCode': 0, 'interaction': found})


@router.put('/interactions/{interaction_id}', response_model=None, openapi_extra=SECURITY, responses=OK,
            dependencies=[Depends(require_json)])
async def update_interaction(request: Request, body: schemas.InteractionUpdate, interaction_id: schemas.ResourceId,
                             agent: Agent = Depends(current_agent)):
    return await answer(request, 'Update', genesys.update_interaction, agent, interaction_id, body.userData,
                        body.subject)


@router.post('/me/interactions/{interaction_id}', response_model=None, openapi_extra=SECURITY, responses=OK,
             dependencies=[Depends(require_json)])
async def operate(request: Request, body: schemas.GenesysOperation, interaction_id: schemas.ResourceId,
                  agent: Agent = Depends(current_agent)):
    operation = genesys.operation_name(body.model_dump())
    return await answer(request, operation, genesys.perform, agent, interaction_id, body.model_dump(),
                        state_of(request).config.timezone)


def workbins_of(conn, agent: Agent) -> list[dict]:
    return [workbin_view(conn, agent, w) for w in queues.workbins_of(conn, agent.agent_id)]


def one_workbin(conn, agent: Agent, workbin_id: str) -> dict:
    return workbin_view(conn, agent, find_workbin(conn, agent, workbin_id))


@router.get('/me/workbins', response_model=None, openapi_extra=SECURITY, responses=OK)
async def my_workbins(request: Request, agent: Agent = Depends(current_agent)):
    return json_response({'statusCode': 0, 'workbins': await run_operation(request, workbins_of, agent)})


@router.get('/me/workbins/{workbin_id}', response_model=None, openapi_extra=SECURITY, responses=OK)
async def my_workbin(request: Request, workbin_id: str = Path(max_length=64), agent: Agent = Depends(current_agent)):
    try:
        found = await run_operation(request, one_workbin, agent, workbin_id)
    except NotFound as exc:
        return json_response({'statusCode': 1, 'statusMessage': str(exc)}, 404)
    return json_response({'statusCode': 0, 'workbin': found})


def pull(conn, agent: Agent, workbin_id: str, group: tuple[str, str | None], body: dict) -> dict:
    """Pull from a group workbin: the group named in the query must be the workbin's."""
    workbin = find_workbin(conn, agent, workbin_id)
    kind, name = group
    if name is not None and (workbin.agent_group if kind == 'agentGroup' else workbin.place_group) != name:
        raise NotFound('workbin %s of %s %s' % (workbin_id, kind, name))
    return genesys.pull_from_workbin(conn, agent, str(workbin.workbin_id), body)


@router.post('/me/workbins/{workbin_id}', response_model=None, openapi_extra=SECURITY, responses=OK,
             dependencies=[Depends(require_json)])
async def pull_from_workbin(request: Request, body: schemas.GenesysOperation, workbin_id: str = Path(max_length=64),
                            agent_group: str | None = Query(None, alias='agentGroup', max_length=255),
                            place_group: str | None = Query(None, alias='placeGroup', max_length=255),
                            agent: Agent = Depends(current_agent)):
    group = ('agentGroup', agent_group) if agent_group is not None else ('placeGroup', place_group)
    return await answer(request, body.operationName, pull, agent, workbin_id, group, body.model_dump())
