"""iService's half of the API (seed 000): `POST /webapp-api-mq-myqueue?api=sendleaveopen` answers an interaction
and leaves it open, `api=send` answers and closes it, through the same operation as `postdesk reply` (so the
response object is the one `postdesk reply --json` prints). `answer.attachments` carry base64 data; the
`threadProperties` are kept on the ticket and come back as `caseProperties`. A request that cannot be carried
out changes nothing and is answered with the same object, its `errors` saying why.
"""
from __future__ import annotations

import base64
import binascii

from fastapi import APIRouter, Depends, Query, Request

from outbound.compose import OutgoingAttachment, clean_content_type

from ..drafts import ReplyError
from ..model import Agent, Answer
from ..operations.replies import UnknownInteraction, reply_to_interaction
from . import schemas
from .app import (ISERVICE_PATH, SECURITY, ApiError, json_response, refuse_unstorable_text, require_json,
                  run_operation, state_of)
from .auth import current_agent

LEAVE_OPEN = {'sendleaveopen': True, 'send': False}
ERRORS = {status: {'model': schemas.IServiceResponse, 'description': text} for status, text in (
    (400, 'The request cannot be carried out'), (401, 'Missing or wrong credentials'),
    (404, 'No such interaction, or not yours'), (413, 'Body too large'), (415, 'Body is not JSON'),
    (429, 'Too many failed sign-ins'), (503, 'The database cannot be reached now'))}

router = APIRouter()


def bad_request(message: str) -> ApiError:
    return ApiError(400, 'BadRequest', message)


def interaction_of(request: schemas.IServiceRequest) -> int:
    """The interaction answered: answer.inResponseToID, else the one of interactionIDs, else interactionID. A
    reply answers one interaction: an inResponseToID that is not among the interactionIDs, or several
    interactionIDs and no inResponseToID to say which, is a request that cannot be carried out."""
    listed = [interaction_number(named) for named in request.interactionIDs or ()]
    if request.answer.inResponseToID is not None:
        answered = interaction_number(request.answer.inResponseToID)
        if listed and answered not in listed:
            raise bad_request('answer.inResponseToID %d is not one of interactionIDs' % answered)
        return answered
    if len(set(listed)) > 1:
        raise bad_request('several interactionIDs: answer.inResponseToID must say which one is answered')
    if listed:
        return listed[0]
    if request.interactionID is not None:
        return interaction_number(request.interactionID)
    raise bad_request('no interaction named (answer.inResponseToID or interactionIDs)')


def interaction_number(named: str | int) -> int:
    text = str(named).strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise bad_request('%r is not an interaction id' % (named,))
    return int(text)


def attachments_of(answer: schemas.IServiceAnswer) -> tuple[OutgoingAttachment, ...]:
    found = []
    for item in answer.attachments or ():
        try:
            data = base64.b64decode(item.data, validate=True)
        except (binascii.Error, ValueError):
            raise bad_request('attachment %r: data is not base64' % item.fileName) from None
        if not item.fileName.strip():
            raise bad_request('an attachment needs a fileName')
        found.append(OutgoingAttachment(item.fileName, clean_content_type(item.contentType or ''), data))
    return tuple(found)


def thread_properties_of(answer: schemas.IServiceAnswer) -> list[dict] | None:
    if answer.threadProperties is None:
        return None
    return [prop.model_dump(exclude_unset=True) for prop in answer.threadProperties]


def answer_of(request: schemas.IServiceRequest, leave_open: bool) -> Answer:
    answer = request.answer
    if not (answer.bodyHtml or '').strip():
        raise bad_request('the answer has no body (answer.bodyHtml)')
    destinations = tuple(a.strip() for a in (answer.destEmail or '').split(',') if a.strip())
    return Answer(ticket_id=0, body_html=answer.bodyHtml, leave_open=leave_open,
                  expect_reply=bool(answer.expectReply),
                  add_subject_ref_num=answer.addSubjectRefNum is not False,
                  supress_subject_ref=bool(answer.supressSubjectRef), dest_email=destinations,
                  attachments=attachments_of(answer), note=answer.note or '',
                  subject=(answer.subject or '').strip() or None)


@router.post(ISERVICE_PATH, response_model=None, openapi_extra=SECURITY,
             responses={200: {'model': schemas.IServiceResponse, 'description': 'The reply was queued'}, **ERRORS},
             dependencies=[Depends(require_json)])
async def my_queue(request: Request, body: schemas.IServiceRequest,
                   api: str = Query(description='sendleaveopen (leave open) or send (send and close)',
                                    max_length=64, json_schema_extra={'enum': list(LEAVE_OPEN)}),
                   agent: Agent = Depends(current_agent)):
    if api.lower() not in LEAVE_OPEN:
        raise bad_request('api must be sendleaveopen or send, not %r' % api)
    refuse_unstorable_text(body.model_dump(exclude_unset=True))
    interaction_id = interaction_of(body)
    answer = answer_of(body, LEAVE_OPEN[api.lower()])
    config = state_of(request).config
    try:
        result = await run_operation(request, reply_to_interaction, agent, interaction_id, answer,
                                     thread_properties_of(body.answer), config.timezone)
    except UnknownInteraction as exc:
        raise ApiError(404, 'NotFound', str(exc)) from None
    except ReplyError as exc:
        raise bad_request(str(exc)) from None
    return json_response(result)
