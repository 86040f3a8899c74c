"""The offering worker of a `postdesk serve` process: it offers queued interactions to ready agents, takes back
invitations nobody answered in time, and once a minute clears expired CometD sessions and old events. It wakes on NOTIFY (work queued, an agent ready, an interaction handed
back) and every second for the timeouts; several processes on one database offer side by side (see
`ticketing.operations.offering`). A database that goes away is retried with a pause.
"""
from __future__ import annotations

import logging
import signal
import time

from ..config import Config
from ..mail.worker import Stop
from ..operations.offering import OfferSettings, offer_work
from ..store import events
from ..store.db import Connection, DatabaseUnavailable, OperationalError, connect, first_line, resolve_database_url

log = logging.getLogger('postdesk.offers')
POLL_SECONDS = 1.0
CLEAN_SECONDS = 60.0
RETRY_SECONDS = 2.0


def settings_of(config: Config) -> OfferSettings:
    return OfferSettings(invitation_timeout=float(config.invitation_timeout),
                         presence=float(config.agent_presence))


def offer_until_stopped(conn: Connection, settings: OfferSettings, stop, session_ttl: float) -> None:
    events.listen(conn, events.WORK_CHANNEL)
    cleaned = 0.0
    while not stop.is_set():
        if time.monotonic() - cleaned > CLEAN_SECONDS:
            clean_notifications(conn, session_ttl)
            cleaned = time.monotonic()
        if offer_work(conn, settings):
            continue                      # more may be waiting: offer again before sleeping
        for _ in conn.notifies(timeout=POLL_SECONDS, stop_after=1):
            pass


def clean_notifications(conn: Connection, session_ttl: float) -> None:
    """Expired CometD sessions, and events no live session can still be owed (kept twice the session lifetime,
    at least ten minutes)."""
    events.purge_sessions(conn, session_ttl)
    events.purge_events(conn, max(2 * session_ttl, 600.0))


def run_offers(config: Config, stop_event, grace: float = 0.0) -> None:
    """The worker process: offer work until `stop_event` (shared with the serving process) is set."""
    stop = Stop(stop_event)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, stop)
    settings = settings_of(config)
    url = resolve_database_url(config.database_url, config.embedded_data)
    while not stop.is_set():
        try:
            with connect(url, autocommit=True) as conn:
                offer_until_stopped(conn, settings, stop, float(config.notification_session_ttl))
        except (OperationalError, DatabaseUnavailable) as exc:
            log.warning('database unavailable (%s); retrying in %.0f s', first_line(exc), RETRY_SECONDS)
            time.sleep(RETRY_SECONDS)
        except Exception:            # the work is in the database: log, pause, offer again
            log.exception('offering worker error; retrying in %.0f s', RETRY_SECONDS)
            time.sleep(RETRY_SECONDS)
