"""The HTTP API's application: the FastAPI app factory, what every request shares (the pools, the token key, the
sign-in throttle), the error handlers and the guard every request passes.

Every error is a JSON body (`formats.superoffice.error_json`; iService's response object with `errors` on the
iService route): 404 for an unknown route, 405 for a wrong method, 400 for malformed JSON or invalid fields,
413 for a body over the configured size, 415 for a body that is not JSON, 503 with Retry-After when PostgreSQL
cannot be reached. A client cannot cause a 500: what it sends is validated before it reaches the store; the
catch-all handler that logs and answers JSON is there for postdesk's own defects.
"""
from __future__ import annotations

import asyncio
import datetime
import json
import logging
import time
import zoneinfo
from dataclasses import dataclass, field
from typing import Annotated

import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.datastructures import DefaultPlaceholder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import Field, TypeAdapter, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from ..config import Config
from ..formats.iservice import error_object
from ..formats.superoffice import error_json
from ..metrics import observe_request
from ..store.db import DatabaseUnavailable, OperationalError, ValueRefused, first_line
from ..store.pool import DatabaseBusy, Pools
from . import schemas
from .admission import take_turn, waiting_elsewhere

log = logging.getLogger('postdesk.api')

ISERVICE_PATH = '/webapp-api-mq-myqueue'
BODY_METHODS = frozenset({'POST', 'PUT', 'PATCH'})
JSON_TYPES = frozenset({'application/json', 'text/json'})
RETRY_AFTER = {'Retry-After': '5'}
# FastAPI's own OpenTelemetry instrumentation, off: postdesk has no OpenTelemetry providers (its metrics are
# Prometheus's), and checking for them took a few microseconds of every request.
NO_TELEMETRY = {'tracing': False, 'metrics': False, 'logs': False}
SECURITY = {'security': [{'bearer': []}, {'basic': []}]}
_KINDS = {400: 'BadRequest', 401: 'Unauthorized', 404: 'NotFound', 405: 'MethodNotAllowed', 406: 'NotAcceptable',
          412: 'PreconditionFailed', 413: 'PayloadTooLarge', 415: 'UnsupportedMediaType', 429: 'TooManyRequests',
          503: 'ServiceUnavailable'}


class Json(JSONResponse):
    """A JSON answer, encoded by orjson (an entity of 80 keys costs a tenth of what the standard library's
    encoder takes), that can always be sent: text with a lone surrogate (echoed from a request), which has no
    UTF-8 form, is written as its \\u escape instead."""

    def render(self, content) -> bytes:
        try:
            return orjson.dumps(content)
        except orjson.JSONEncodeError:
            return json.dumps(content, separators=(',', ':'), allow_nan=False).encode('ascii')


class ApiError(Exception):
    """An answer other than success, with its status, kind, message, headers and extra fields."""

    def __init__(self, status: int, kind: str, message: str, headers: dict | None = None, **extra):
        super().__init__(message)
        self.status, self.kind, self.message, self.headers, self.extra = status, kind, message, headers, extra


@dataclass
class ApiState:
    """What every request of one server shares."""
    config: Config
    pools: Pools
    key: str
    throttle: object = None
    agent_cache: object = None
    mail_intake: object = None
    bayeux: object = None
    tickets: object = None           # tickets by id, read together (reads.Coalesced)
    authenticate: object = None      # the dependency that names the agent (auth.current_agent)
    started: float = field(default_factory=time.monotonic)


def state_of(request: Request) -> ApiState:
    return request.app.state.api


def not_found(what: str) -> ApiError:
    """The answer for something that does not exist and for something the agent may not see: the same."""
    return ApiError(404, 'NotFound', '%s not found' % what)


def error_body(path: str, status: int, kind: str, message: str, extra: dict | None = None) -> dict:
    if path.startswith(ISERVICE_PATH):
        return error_object(message)
    return error_json(status, kind, message, **(extra or {}))


def error_response(request: Request, status: int, kind: str, message: str, headers: dict | None = None,
                   extra: dict | None = None) -> JSONResponse:
    return Json(error_body(request.url.path, status, kind, message, extra), status, headers)


async def on_api_error(request: Request, exc: ApiError) -> JSONResponse:
    return error_response(request, exc.status, exc.kind, exc.message, exc.headers, exc.extra)


async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    message = exc.detail if isinstance(exc.detail, str) else 'error'
    headers = getattr(exc, 'headers', None)
    if exc.status_code == 405:
        headers = {**(headers or {}), 'Allow': allowed_methods(request)}
    return error_response(request, exc.status_code, _KINDS.get(exc.status_code, 'Error'), message, headers)


def allowed_methods(request: Request) -> str:
    """Every method the request's path answers (RFC 9110, 10.2.1): Starlette's 405 names only those of the first
    route whose path matches, and /api/v2/interactions/{id} has two."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if getattr(route, 'methods', None) and route.matches(request.scope)[0] != Match.NONE:
            methods |= route.methods
    if 'GET' in methods:
        methods.add('HEAD')                # Guard answers it as the GET
    return ', '.join(sorted(methods))


def validation_details(exc: RequestValidationError) -> list[dict]:
    return [{'loc': [str(part) for part in error.get('loc', ())], 'msg': str(error.get('msg', '')),
             'type': str(error.get('type', ''))} for error in exc.errors()]


def requires_agent(request: Request) -> bool:
    """Whether the route matched takes credentials (depends on the agent)."""
    dependant = getattr(request.scope.get('route'), 'dependant', None)
    authenticate = state_of(request).authenticate
    return dependant is not None and any(d.call is authenticate for d in dependant.dependencies)


async def on_invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """400 with what is wrong, once the credentials are right: a request without them learns only 401."""
    if requires_agent(request):
        try:
            await state_of(request).authenticate(request)
        except ApiError as refused:
            return await on_api_error(request, refused)
    details = validation_details(exc)
    if any(d['type'] == 'json_invalid' for d in details):
        message = 'the body is not valid JSON'
    else:
        first = details[0] if details else {'loc': [], 'msg': 'invalid request'}
        message = '%s: %s' % ('.'.join(first['loc'][1:] or first['loc']), first['msg'])
    return error_response(request, 400, 'BadRequest', message, extra={'Details': details})


async def on_database_down(request: Request, exc: Exception) -> JSONResponse:
    log.warning('%s %s: database unavailable (%s)', request.method, request.url.path, exc)
    return error_response(request, 503, 'ServiceUnavailable', 'the database cannot be reached now; try again later',
                          RETRY_AFTER)


async def on_value_refused(request: Request, exc: Exception) -> JSONResponse:
    """A value PostgreSQL cannot hold (text with NUL, a value too large for an index, a number out of range),
    or text with a lone surrogate that has no UTF-8 form: the client's request, answered 400."""
    if isinstance(exc, UnicodeEncodeError):
        message = lone_surrogate('the request', exc) if isinstance(exc.object, str) else \
            'the request holds text with no UTF-8 form'
    else:
        message = 'a value cannot be stored: %s' % first_line(exc)
    return error_response(request, 400, 'BadRequest', message)


def lone_surrogate(where: str, exc: UnicodeEncodeError) -> str:
    return '%s holds a lone surrogate (\\u%04x), which is not a character' % (where, ord(exc.object[exc.start]))


def refuse_unstorable_text(value, where: str = 'request') -> None:
    """Text that PostgreSQL cannot hold (NUL) or UTF-8 cannot carry (a lone surrogate), anywhere in a parsed
    body: ApiError 400 naming where. For routes whose text is changed before it is stored (a reply's HTML is
    sanitised, its subject encoded for a header), where the database would never see it to refuse it."""
    if isinstance(value, str):
        if '\x00' in value:
            raise ApiError(400, 'BadRequest', '%s holds a NUL character, which text cannot hold' % where)
        try:
            value.encode('utf-8')
        except UnicodeEncodeError as exc:
            raise ApiError(400, 'BadRequest', lone_surrogate(where, exc)) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            refuse_unstorable_text(key, where)
            refuse_unstorable_text(item, '%s.%s' % (where, key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            refuse_unstorable_text(item, '%s[%d]' % (where, index))


async def on_defect(request: Request, exc: Exception) -> JSONResponse:
    log.exception('%s %s failed', request.method, request.url.path)
    return error_response(request, 500, 'InternalError', 'internal error (logged)')


async def require_json(request: Request) -> None:
    """A dependency of the routes that take a body: JSON only (application/json or text/json), else 415 (once
    the credentials are right: a request without them learns only 401)."""
    media = request.headers.get('content-type', '').split(';', 1)[0].strip().lower()
    if media not in JSON_TYPES:
        await state_of(request).authenticate(request)
        raise ApiError(415, 'UnsupportedMediaType', 'the body must be JSON (application/json or text/json)')


LOCALE_HEADERS = (('SO-TimeZone', 64), ('Accept-Language', 256), ('SO-Language', 64), ('SO-Culture', 64))
SELECT_LIMIT = 2000


# Path ids read from the request itself (path_id), for the routes whose cost matters most: declared as FastAPI
# parameters beside a Depends for the credentials, resolving them took a third of a ticket's GET.
_PATH_ID = TypeAdapter(Annotated[schemas.PathId, Field(ge=1, le=schemas.MAX_ID)])


def path_id_parameter(name: str) -> dict:
    """The OpenAPI declaration of a path id that path_id reads (as FastAPI declares one it validates)."""
    return {'name': name, 'in': 'path', 'required': True,
            'schema': {'type': 'integer', 'minimum': 1, 'maximum': schemas.MAX_ID,
                       'title': name.replace('_', ' ').title()}}


def path_id(request: Request, name: str) -> int:
    """A path id, validated as FastAPI validates one it declares: a RequestValidationError (answered 400) when it
    is not an integer from 1 to MAX_ID."""
    try:
        return _PATH_ID.validate_python(request.path_params[name])
    except ValidationError as exc:
        raise RequestValidationError([{**error, 'loc': ('path', name)}
                                      for error in exc.errors(include_url=False)]) from None


# The routes that answer dates declare SuperOffice's locale headers in the OpenAPI document, and those that take
# it `$select`; zone_of and selected read them from the request itself, after the credentials (declared as
# FastAPI parameters and dependencies, they cost a fifth of a ticket's GET).
LOCALE = {**SECURITY, 'parameters': [{'name': name, 'in': 'header', 'required': False,
                                      'schema': {'type': 'string', 'maxLength': limit}}
                                     for name, limit in LOCALE_HEADERS]}
SELECTING = {**SECURITY, 'parameters': [{'name': '$select', 'in': 'query', 'required': False,
                                         'schema': {'type': 'string', 'maxLength': SELECT_LIMIT}}]}
LOCALE_SELECTING = {**SECURITY, 'parameters': LOCALE['parameters'] + SELECTING['parameters']}


def zone_of(request: Request) -> datetime.tzinfo | None:
    """SuperOffice's request headers: SO-TimeZone converts the answer's dates (an unknown zone is 400); the
    language and culture headers are accepted (postdesk answers in one language)."""
    for name, limit in LOCALE_HEADERS:
        if len(request.headers.get(name, '')) > limit:
            raise ApiError(400, 'BadRequest', '%s: longer than %d characters' % (name, limit))
    so_timezone = request.headers.get('SO-TimeZone')
    if not so_timezone:
        return None
    try:
        return zoneinfo.ZoneInfo(so_timezone.strip())
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ApiError(400, 'BadRequest', 'unknown time zone %r in SO-TimeZone' % so_timezone) from None


def selected(request: Request) -> str | None:
    """The `$select` of the query (400 beyond SELECT_LIMIT characters)."""
    select = request.query_params.get('$select')
    if select is not None and len(select) > SELECT_LIMIT:
        raise ApiError(400, 'BadRequest', '$select: longer than %d characters' % SELECT_LIMIT)
    return select


async def run_operation(request: Request, operation, *args):
    """Run a synchronous operation in a thread, on a connection of its own from the operations' pool. An
    operation once started finishes (a thread cannot be stopped), so a shutdown whose grace ends meanwhile does
    not cancel the answer either: the client learns what was done, not an error for work that was done."""
    pools = state_of(request).pools

    def call():
        with pools.operation_connection() as conn:
            return operation(conn, *args)
    running = asyncio.ensure_future(asyncio.to_thread(call))
    async with waiting_elsewhere(request.scope):
        try:
            return await asyncio.shield(running)
        except asyncio.CancelledError:
            if running.done() and running.cancelled():
                raise
            asyncio.current_task().uncancel()
            return await running


def json_response(body, status: int = 200, headers: dict | None = None) -> JSONResponse:
    return Json(body, status, headers)


# ------------------------------------------------------------------------------------------ the guard

class Guard:
    """Pure ASGI middleware: request bodies are read whole up to the configured size (413 beyond it), before the
    request takes its turn to run (admission), and every request's route, status and latency are counted for
    /metrics. HEAD is answered wherever GET is (RFC 9110, 9.3.2): as the GET, headers only."""

    def __init__(self, app, max_body: int):
        self.app, self.max_body = app, max_body

    async def __call__(self, scope, receive, send):
        if scope['type'] != 'http':
            return await self.app(scope, receive, send)
        started, status, method = time.perf_counter(), [0], scope['method']
        if method == 'HEAD':
            scope = {**scope, 'method': 'GET'}

        async def sending(message):
            if message['type'] == 'http.response.start':
                status[0] = message['status']
            elif method == 'HEAD' and message['type'] == 'http.response.body':
                message = {**message, 'body': b''}
            await send(message)
        try:
            if scope['method'] in BODY_METHODS:
                body = await read_body(scope, receive, self.max_body)
                if body is None:
                    return await refuse_body(scope, sending, self.max_body)
                receive = replay(body, receive)
                scope = as_application_json(scope)
                await take_turn(scope)
            await self.app(scope, receive, sending)
        except asyncio.CancelledError:          # the shutdown's grace ended (uvicorn cancels what still runs)
            if status[0]:
                raise
            await answer_shutting_down(scope, sending)
            asyncio.current_task().uncancel()    # answered: the request ends here, not as the application's error
        finally:
            route = scope.get('route')
            observe_request(getattr(route, 'path', 'unmatched'), method, status[0] or 500,
                            time.perf_counter() - started)


async def read_body(scope, receive, limit: int) -> bytes | None:
    """The whole body, or None when it is larger than `limit` (announced or counted)."""
    declared = dict(scope['headers']).get(b'content-length', b'0')
    if not declared.isdigit() or int(declared) > limit:
        return None if declared.isdigit() else b''
    chunks, size = [], 0
    while True:
        message = await receive()
        if message['type'] != 'http.request':
            break
        chunks.append(message.get('body', b''))
        size += len(chunks[-1])
        if size > limit:
            return None
        if not message.get('more_body', False):
            break
    return b''.join(chunks)


def as_application_json(scope: dict) -> dict:
    """SuperOffice's text/json, read as the application/json it is (FastAPI parses only application/*)."""
    headers = scope['headers']
    for index, (name, value) in enumerate(headers):
        if name == b'content-type' and value.split(b';', 1)[0].strip().lower() == b'text/json':
            changed = list(headers)
            changed[index] = (name, b'application/json' + value[value.find(b';'):] if b';' in value else
                              b'application/json')
            return {**scope, 'headers': changed}
    return scope


def replay(body: bytes, receive):
    """The body read already, then the connection's own messages (its disconnect)."""
    sent = [False]

    async def replayed():
        if sent[0]:
            return await receive()
        sent[0] = True
        return {'type': 'http.request', 'body': body, 'more_body': False}
    return replayed


async def refuse_body(scope, send, limit: int) -> None:
    await send_closing(scope, send, 413, 'PayloadTooLarge', 'the request body is larger than %d bytes' % limit)


async def answer_shutting_down(scope, send) -> None:
    """A request the shutdown's grace ended before it was answered (a read still waiting for the database)."""
    await send_closing(scope, send, 503, 'ServiceUnavailable', 'the server is shutting down; try again',
                       [(b'retry-after', RETRY_AFTER['Retry-After'].encode())])


async def send_closing(scope, send, status: int, kind: str, message: str, headers: list | None = None) -> None:
    """An error answered from the guard itself, and the connection closed after it."""
    body = json.dumps(error_body(scope['path'], status, kind, message)).encode()
    await send({'type': 'http.response.start', 'status': status,
                'headers': [(b'content-type', b'application/json'), (b'content-length', str(len(body)).encode()),
                            (b'connection', b'close'), *(headers or [])]})
    await send({'type': 'http.response.body', 'body': body})


# ------------------------------------------------------------------------------------------ the app

def openapi_document(app: FastAPI) -> dict:
    """FastAPI's document, with 400 (not 422) for invalid requests and the two authentication schemes."""
    if app.openapi_schema:
        return app.openapi_schema
    document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    for path in document.get('paths', {}).values():
        for operation in path.values():
            responses = operation.get('responses', {})
            if responses.get('422', {}).get('description') == 'Validation Error':
                del responses['422']
    schemes = document.setdefault('components', {}).setdefault('securitySchemes', {})
    schemes.update(bearer={'type': 'http', 'scheme': 'bearer'}, basic={'type': 'http', 'scheme': 'basic'})
    for name in ('HTTPValidationError', 'ValidationError'):
        document['components'].get('schemas', {}).pop(name, None)
    app.openapi_schema = document
    return document


def add_routes(app: FastAPI, router: APIRouter) -> None:
    """The router's routes, in the app's own list. FastAPI's include_router keeps an included router as a layer
    that every request passes through (matched route by route once more, with its include context merged):
    measured here, a tenth of a ticket's GET. These routers have nothing to merge (their prefix is in their
    paths already; no dependencies, tags, responses or handlers of their own), so their routes are the app's."""
    if has_settings(router):
        raise ValueError('a router with settings of its own must be included (app.include_router)')
    app.router.routes.extend(router.routes)


_PLAIN_ROUTER = APIRouter()
_ROUTER_SETTINGS = ('dependencies', 'tags', 'responses', 'callbacks', 'deprecated', 'include_in_schema',
                    'on_startup', 'on_shutdown', 'route_class')


def has_settings(router: APIRouter) -> bool:
    """Whether the router sets anything include_router would merge into its routes (its prefix aside)."""
    return (any(getattr(router, name) != getattr(_PLAIN_ROUTER, name) for name in _ROUTER_SETTINGS)
            or not isinstance(router.default_response_class, DefaultPlaceholder))


def create_app(state: ApiState) -> FastAPI:
    from . import genesys, iservice, metrics, notifications, superoffice
    from .auth import AgentCache, Throttle, current_agent
    from .cometd import Bayeux, BayeuxSettings, Bell
    from .mail_intake import MailIntake
    from .notifications import pool_runner
    from .reads import Coalesced
    from ..store import views
    state.throttle = state.throttle or Throttle()
    state.authenticate = current_agent
    state.agent_cache = state.agent_cache or AgentCache()
    state.mail_intake = state.mail_intake or MailIntake(state.pools, state.config)
    state.tickets = state.tickets or Coalesced(state.pools, views.ticket_views)
    state.bayeux = state.bayeux or Bayeux(pool_runner(state.pools), Bell(), BayeuxSettings(
        state.config.long_poll_seconds, state.config.notification_session_ttl))
    app = FastAPI(title='postdesk', version='1', docs_url=None, redoc_url=None, openapi_url='/openapi.json',
                  telemetry=NO_TELEMETRY, redirect_slashes=False,   # a path's spelling is its route, never a 307
                  description='SuperOffice tickets and mail, iService replies, Genesys interactions and workbins, '
                              'CometD notifications, for postdesk agents.')
    app.state.api = state
    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_invalid_request)
    for kind in (DatabaseBusy, DatabaseUnavailable, OperationalError):
        app.add_exception_handler(kind, on_database_down)
    for kind in (*ValueRefused, UnicodeEncodeError):
        app.add_exception_handler(kind, on_value_refused)
    app.add_exception_handler(Exception, on_defect)
    for module in (metrics, superoffice, iservice, genesys, notifications):
        add_routes(app, module.router)
    app.add_middleware(Guard, max_body=state.config.http_body_limit())
    app.openapi = lambda: openapi_document(app)
    return app
