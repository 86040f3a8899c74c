"""The Prometheus metrics every stage counts into: SMTP/LMTP replies by code, messages stored by outcome, delivery
attempts by result, API requests and their latency by route and status, and the API's database statements.

`postdesk serve` runs listeners, API and workers in several processes; they share the counts through
prometheus-client's multiprocess mode (one file per process in a directory of the serve run). The library
decides on that mode when it is first imported, so it is imported here only when a metric is first used, after
`use_directory` (serve calls it before it forks). Elsewhere (replay, deliver) the counts stay in the process.
"""
from __future__ import annotations

import os
import threading
from types import SimpleNamespace

MULTIPROCESS_VARIABLE = 'PROMETHEUS_MULTIPROC_DIR'
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def use_directory(directory: str) -> None:
    """Share counts between this process and the ones it forks, through files in `directory`."""
    os.environ[MULTIPROCESS_VARIABLE] = directory


def multiprocess_directory() -> str | None:
    return os.environ.get(MULTIPROCESS_VARIABLE) or None


_CREATED: list[SimpleNamespace] = []
_CREATING = threading.Lock()


def _metrics() -> SimpleNamespace:
    """The metrics, made on first use (once, whichever thread asks first)."""
    if not _CREATED:
        with _CREATING:
            if not _CREATED:
                _CREATED.append(_make())
    return _CREATED[0]


def _make() -> SimpleNamespace:
    import prometheus_client as prometheus
    return SimpleNamespace(
        smtp_replies=prometheus.Counter('postdesk_smtp_replies', 'SMTP and LMTP replies sent, by protocol and code',
                                        ['protocol', 'code']),
        stored=prometheus.Counter('postdesk_messages_stored', 'Inbound messages by what became of them',
                                  ['outcome']),
        deliveries=prometheus.Counter('postdesk_delivery_attempts', 'Delivery attempts to the relay, by result',
                                      ['result']),
        requests=prometheus.Counter('postdesk_api_requests', 'HTTP API requests, by route, method and status',
                                    ['route', 'method', 'status']),
        latency=prometheus.Histogram('postdesk_api_request_duration_seconds', 'HTTP API request latency',
                                     ['route', 'method', 'status'], buckets=LATENCY_BUCKETS),
        statements=prometheus.Counter('postdesk_api_database_statements',
                                      'SQL statements the HTTP API sent to PostgreSQL'),
    )


def count_smtp_reply(protocol: str, code: str) -> None:
    _metrics().smtp_replies.labels(protocol, code).inc()


def count_outcomes(outcomes) -> None:
    counter = _metrics().stored
    for outcome in outcomes:
        counter.labels(outcome.outcome).inc()


def count_delivery(result: str) -> None:
    _metrics().deliveries.labels(result).inc()


_REQUEST_SERIES: dict[tuple[str, str, int], tuple] = {}     # a request's counter and histogram, by their labels


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    series = _REQUEST_SERIES.get((route, method, status))
    if series is None:
        metrics = _metrics()
        labels = (route, method, str(status))
        series = _REQUEST_SERIES.setdefault((route, method, status), (metrics.requests.labels(*labels),
                                                                       metrics.latency.labels(*labels)))
    series[0].inc()
    series[1].observe(seconds)


def count_statement() -> None:
    _metrics().statements.inc()
