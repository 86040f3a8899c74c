"""`GET /metrics` in the Prometheus text format and `GET /healthz`, both without an agent's credentials.

/metrics is open to loopback clients and needs `Authorization: Bearer <metrics_token>` from anywhere else (no
token configured: loopback only). Counts come from every process of the serve run (prometheus-client's
multiprocess mode, see `ticketing.metrics`); the spool, outbox and quarantine depths are read from PostgreSQL at
scrape time, so they are right whichever process changed them.
"""
from __future__ import annotations

import hmac
import ipaddress

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from ..metrics import multiprocess_directory
from ..store import views
from ..store.db import DatabaseError
from ..store.pool import DatabaseBusy, ping
from . import schemas
from .app import RETRY_AFTER, ApiError, state_of

router = APIRouter()
TEXT = {'content': {'text/plain': {'schema': {'type': 'string'}}}, 'description': 'Prometheus text format'}


def from_loopback(request: Request) -> bool:
    try:
        return request.client is not None and ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:
        return False


def check_scraper(request: Request) -> None:
    if from_loopback(request):
        return
    token = state_of(request).config.metrics_token
    given = request.headers.get('authorization', '')
    if not token or not hmac.compare_digest(given.encode(), ('Bearer %s' % token).encode()):
        raise ApiError(401, 'Unauthorized', '/metrics needs the metrics token off loopback',
                       {'WWW-Authenticate': 'Bearer realm="postdesk metrics"'})


def exposition(depths: dict[str, int] | None) -> bytes:
    import prometheus_client as prometheus
    from prometheus_client.core import GaugeMetricFamily
    registry = prometheus.CollectorRegistry()
    directory = multiprocess_directory()
    if directory:
        from prometheus_client import multiprocess
        multiprocess.MultiProcessCollector(registry, path=directory)
    else:
        registry = prometheus.REGISTRY

    class Depths:
        def collect(self):
            family = GaugeMetricFamily('postdesk_queue_depth', 'Messages waiting, by queue', labels=['queue'])
            for queue, depth in (depths or {}).items():
                family.add_metric([queue], depth)
            yield family
    local = prometheus.CollectorRegistry()
    local.register(Depths())
    return prometheus.generate_latest(registry) + prometheus.generate_latest(local)


@router.get('/metrics', response_model=None, responses={200: TEXT, 401: {'model': schemas.ErrorBody}})
async def metrics(request: Request) -> Response:
    check_scraper(request)
    try:
        depths = await state_of(request).pools.read(views.depths)
    except (DatabaseBusy, DatabaseError):
        depths = None
    from prometheus_client import CONTENT_TYPE_LATEST
    return Response(exposition(depths), media_type=CONTENT_TYPE_LATEST)


@router.get('/healthz', response_model=schemas.Health,
            responses={503: {'model': schemas.Health, 'description': 'PostgreSQL does not answer'}})
async def healthz(request: Request):
    try:
        await state_of(request).pools.read(ping)
    except (DatabaseBusy, DatabaseError):
        return JSONResponse({'status': 'unavailable'}, 503, RETRY_AFTER)
    return JSONResponse({'status': 'ok'})
