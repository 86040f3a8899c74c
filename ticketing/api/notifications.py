"""The CometD endpoint of the agents' notifications (seed 001): `POST /api/v2/notifications` (and any path below
it, as CometD clients append the message type to the URL) takes a Bayeux message or a list of them and answers a
list (see `cometd.py`). It is authenticated like every other route; a long poll holds no database connection
while it waits.
"""
from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter, Depends, Request

from ..model import Agent
from . import schemas
from .admission import waiting_elsewhere
from .app import SECURITY, ApiError, json_response, state_of
from .auth import current_agent
from .cometd import CONNECT
from .schemas import MAX_DEPTH, nesting_depth

MAX_MESSAGES = 100

router = APIRouter(prefix='/api/v2')
RESPONSES = {200: {'description': 'The Bayeux answers, in order'},
             **{status: {'model': schemas.ErrorBody, 'description': text} for status, text in (
                 (400, 'Not a Bayeux message'), (401, 'Missing or wrong credentials'),
                 (413, 'Body too large'), (429, 'Too many failed sign-ins'))}}


def pool_runner(pools):
    """Runs a function of a connection from the operations' pool, in a thread."""
    async def run(call):
        def on_connection():
            with pools.operation_connection() as conn:
                return call(conn)
        return await asyncio.to_thread(on_connection)
    return run


def not_a_number(name: str):
    raise ValueError('%s is not JSON' % name)


async def bayeux_messages(request: Request) -> list:
    """The messages of a Bayeux request: a message or a list of at most MAX_MESSAGES, one connect at most."""
    try:
        body = json.loads(await request.body() or b'null', parse_constant=not_a_number)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(400, 'BadRequest', 'the body is not valid JSON') from None
    if isinstance(body, dict):
        body = [body]
    if not isinstance(body, list) or not body:
        raise ApiError(400, 'BadRequest', 'a Bayeux request is a message or a list of messages')
    if len(body) > MAX_MESSAGES or sum(isinstance(m, dict) and m.get('channel') == CONNECT for m in body) > 1:
        raise ApiError(400, 'BadRequest', 'a Bayeux request holds at most %d messages and one /meta/connect'
                       % MAX_MESSAGES)
    if nesting_depth(body) > MAX_DEPTH:
        raise ApiError(400, 'BadRequest', 'the messages are nested deeper than %d levels' % MAX_DEPTH)
    return body


async def bayeux(request: Request, agent: Agent):
    messages = await bayeux_messages(request)
    async with waiting_elsewhere(request.scope):          # a long poll waits for events, not for the loop
        answers = await state_of(request).bayeux.handle(agent, messages)
    return json_response(answers)


@router.post('/notifications', response_model=None, openapi_extra=SECURITY, responses=RESPONSES)
async def notifications(request: Request, agent: Agent = Depends(current_agent)):
    return await bayeux(request, agent)


@router.post('/notifications/{message_type:path}', response_model=None, openapi_extra=SECURITY,
             responses={**RESPONSES, 404: {'model': schemas.ErrorBody,
                                           'description': 'A message type no route matches (a line break in it)'}})
async def notifications_typed(request: Request, message_type: str, agent: Agent = Depends(current_agent)):
    return await bayeux(request, agent)
