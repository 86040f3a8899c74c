"""SuperOffice's half of the API (seeds 002, 003): CreateTicketFromMailData, tickets as TicketEntity (one, and a
page with `$filter`, `$top`, `$skip` and the total), a ticket's messages with their attachments and original
bytes, and SaveTicketEntity with ETag / If-Match.

Reads run on the event loop from the async pool; intake and saves are synchronous operations run in threads,
each on a connection of its own. A ticket or message the agent may not see is answered exactly as one that does
not exist.
"""
from __future__ import annotations

import re
import urllib.parse

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response

from ..drafts import ReplyError
from ..formats.entities import BadEntity, etag, etag_unchanged, ticket_filter, ticket_save
from ..formats.superoffice import (created_ticket_info, message_entity, select_fields, ticket_entity,
                                   ticket_page_json)
from ..model import QUARANTINED, Agent
from ..operations.mail import MailRequest, UnknownMailboxId
from ..operations.tickets import BadSave, StaleTicket, save_ticket
from ..store import views
from ..store.tickets import TicketNotFound
from . import schemas
from .admission import waiting_elsewhere
from .app import (LOCALE, LOCALE_SELECTING, SECURITY, ApiError, json_response, not_found, path_id,
                  path_id_parameter, require_json, run_operation, selected, state_of, zone_of)
from .auth import current_agent

MAX_ID = schemas.MAX_ID
ERRORS = {status: {'model': schemas.ErrorBody, 'description': text} for status, text in (
    (400, 'Invalid request'), (401, 'Missing or wrong credentials'), (404, 'Not found, or not yours'),
    (429, 'Too many failed sign-ins'), (503, 'The database cannot be reached now'))}
BODY_ERRORS = {**ERRORS, 413: {'model': schemas.ErrorBody, 'description': 'Body too large'},
               415: {'model': schemas.ErrorBody, 'description': 'Body is not JSON'}}
ETAG = {'ETag': {'description': "The ticket's version, for If-Match", 'schema': {'type': 'string'}}}
BINARY = {'content': {'*/*': {'schema': {'type': 'string', 'format': 'binary'}}}, 'description': 'The bytes'}
_SAFE_TYPE = re.compile(r'[A-Za-z0-9][\w.+-]*/[A-Za-z0-9][\w.+-]*')

router = APIRouter(prefix='/api/v1')


@router.post('/Agents/CustomerService/CreateTicketFromMailData', response_model=None, openapi_extra=LOCALE_SELECTING,
             responses={200: {'model': schemas.TicketInfo, 'description': 'Stored (or a duplicate)'},
                        422: {'model': schemas.Quarantined, 'description': 'Quarantined: it cannot be a ticket'},
                        **BODY_ERRORS},
             dependencies=[Depends(require_json)])
async def create_ticket_from_mail_data(request: Request, body: schemas.MailData,
                                       agent: Agent = Depends(current_agent)):
    select = selected(request)
    zone_of(request)                  # TicketInfo has no dates, but an unknown zone is the client's mistake: 400
    if not body.Data:
        raise ApiError(400, 'BadRequest', 'Data: the message is empty')
    state = state_of(request)
    data = body.Data.encode('utf-8', 'surrogateescape')
    if len(data) > state.config.max_message_bytes:
        raise ApiError(413, 'PayloadTooLarge', 'the message is larger than %d bytes' % state.config.max_message_bytes)
    try:
        async with waiting_elsewhere(request.scope):
            result = await state.mail_intake.store(MailRequest(agent, body.MailboxId, data))
    except UnknownMailboxId:
        raise not_found('mailbox %d' % body.MailboxId) from None
    outcome = result.outcome
    if outcome.outcome == QUARANTINED:
        raise ApiError(422, 'Quarantined', 'quarantined: %s' % outcome.reason, QuarantineId=result.quarantine_id,
                       Outcome=QUARANTINED, Reason=outcome.reason)
    url = state.config.ticket_url(outcome.ticket.ticket_id) if outcome.ticket else None
    return json_response(select_fields(created_ticket_info(outcome, url), select))


@router.get('/Ticket/{ticket_id}', response_model=None,
            openapi_extra={**LOCALE_SELECTING,
                           'parameters': [path_id_parameter('ticket_id')] + LOCALE_SELECTING['parameters']},
            responses={200: {'model': schemas.TicketEntity, 'description': 'The ticket, with an ETag',
                             'headers': ETAG},
                       304: {'description': 'Unchanged since the ETag given in If-None-Match', 'headers': ETAG},
                       **ERRORS})
async def get_ticket(request: Request):      # the hottest route: credentials and id read here (app.path_id)
    agent = await current_agent(request)
    ticket_id = path_id(request, 'ticket_id')
    select, zone = selected(request), zone_of(request)
    ticket = await state_of(request).tickets.get(ticket_id, agent.scope)
    if ticket is None:
        raise not_found('ticket %d' % ticket_id)
    headers = {'ETag': etag(ticket), 'Vary': 'SO-TimeZone'}      # the tag is the ticket's version, in any zone
    if etag_unchanged(request.headers.get('if-none-match'), ticket):
        return Response(status_code=304, headers=headers)
    return json_response(select_fields(ticket_entity(ticket, zone), select), headers=headers)


@router.get('/Ticket', response_model=None, openapi_extra=LOCALE,
            responses={200: {'model': schemas.TicketPage, 'description': 'A page of tickets and the total'},
                       **ERRORS})
async def list_tickets(request: Request, top: int | None = Query(None, alias='$top', ge=0, le=MAX_ID),
                       skip: int | None = Query(None, alias='$skip', ge=0, le=MAX_ID),
                       filter_text: str | None = Query(None, alias='$filter', max_length=2000),
                       agent: Agent = Depends(current_agent)):
    zone = zone_of(request)
    try:
        wanted = ticket_filter(filter_text, top, skip)
    except BadEntity as exc:
        raise ApiError(400, 'BadRequest', str(exc)) from None
    page = await state_of(request).pools.read(views.ticket_page, wanted, agent.scope)
    return json_response(ticket_page_json(page, wanted.top, wanted.skip, zone))


@router.get('/TicketMessage/{message_id}', response_model=None, openapi_extra=LOCALE,
            responses={200: {'model': schemas.MessageEntity, 'description': 'The message'}, **ERRORS})
async def get_message(request: Request, message_id: schemas.ResourceId,
                      agent: Agent = Depends(current_agent)):
    zone = zone_of(request)
    message = await state_of(request).pools.read(views.message_view, message_id, agent.scope)
    if message is None:
        raise not_found('message %d' % message_id)
    return json_response(message_entity(message, zone))


def download(data: bytes, content_type: str, filename: str) -> Response:
    """Bytes as a download, never rendered from our origin (attachment, nosniff, a sandbox)."""
    media = content_type if _SAFE_TYPE.fullmatch(content_type or '') else 'application/octet-stream'
    quoted = urllib.parse.quote(filename, safe='')
    fallback = re.sub(r'[^A-Za-z0-9._-]', '_', filename) or 'attachment'
    # The type as stored, with no charset added (Starlette adds one to text/* given as media_type).
    return Response(data, headers={
        'Content-Type': media, 'Content-Disposition': "attachment; filename=\"%s\"; filename*=UTF-8''%s" % (fallback, quoted),
        'X-Content-Type-Options': 'nosniff', 'Content-Security-Policy': "sandbox; default-src 'none'"})


@router.get('/TicketMessage/{message_id}/Attachment/{number}', response_model=None, openapi_extra=SECURITY,
            responses={200: BINARY, **ERRORS})
async def get_attachment(request: Request, message_id: schemas.ResourceId,
                         number: schemas.AttachmentNumber, agent: Agent = Depends(current_agent)):
    found = await state_of(request).pools.read(views.attachment_bytes, message_id, number, agent.scope)
    if found is None:
        raise not_found('attachment %d of message %d' % (number, message_id))
    attachment, data = found
    return download(data, attachment.content_type, attachment.filename)


@router.get('/TicketMessage/{message_id}/Raw', response_model=None, openapi_extra=SECURITY,
            responses={200: {'content': {'message/rfc822': {'schema': {'type': 'string', 'format': 'binary'}}},
                             'description': 'The original RFC 822 bytes'}, **ERRORS})
async def get_raw(request: Request, message_id: schemas.ResourceId, agent: Agent = Depends(current_agent)):
    data = await state_of(request).pools.read(views.raw_bytes, message_id, agent.scope)
    if data is None:
        raise not_found('message %d' % message_id)
    return download(data, 'message/rfc822', 'message-%d.eml' % message_id)


@router.post('/Agents/Ticket/SaveTicketEntity', response_model=None, openapi_extra=LOCALE,
             responses={200: {'model': schemas.TicketEntity, 'description': 'The saved ticket, with its ETag',
                              'headers': ETAG},
                        412: {'model': schemas.ErrorBody, 'description': 'If-Match no longer matches'},
                        **BODY_ERRORS},
             dependencies=[Depends(require_json)])
async def save_ticket_entity(request: Request, body: schemas.TicketEntityIn,
                             if_match: str | None = Header(None, alias='If-Match', max_length=1000),
                             agent: Agent = Depends(current_agent)):
    zone = zone_of(request)
    try:
        save = ticket_save(body.model_dump(exclude_unset=True))
        ticket = await run_operation(request, save_ticket, agent, save, if_match)
    except (BadEntity, BadSave, ReplyError) as exc:
        raise ApiError(400, 'BadRequest', str(exc)) from None
    except TicketNotFound:
        raise not_found('ticket %d' % save.ticket_id) from None
    except StaleTicket as exc:
        raise ApiError(412, 'PreconditionFailed', str(exc)) from None
    return json_response(ticket_entity(ticket, zone), headers={'ETag': etag(ticket)})
