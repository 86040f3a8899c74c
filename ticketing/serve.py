"""`postdesk serve`, process supervision: SMTP and LMTP listeners and the HTTP API on one asyncio loop, with
intake and delivery worker processes beside them, each started again if it dies.

Start: the schema is checked, intake worker processes start (they turn the spool into tickets), a delivery
process starts when a relay is configured (it sends the outbox), the listeners and the API bind and the log says
where. SIGTERM or SIGINT: the listeners and the API stop accepting, sessions in a transaction and HTTP requests
in flight may finish within the grace period (idle sessions get 421), the workers finish the spool, and the
process exits 0. The processes share their metrics through files in a directory of the run (see
`ticketing.metrics`), removed at the end.
"""
from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import multiprocessing
import os
import shutil
import signal
import ssl
import tempfile
from dataclasses import dataclass, replace


from . import metrics
from .config import Config
from .mail.listener import (IntakeHandler, LmtpSession, Recipients, SmtpSession, Timeouts, default_hostname, drain,
                            parse_listen, session_factory)
from .mail.spool import SpoolWriter
from .mail.worker import run_worker
from .offers.worker import run_offers
from .outbox.worker import run_delivery_process
from .store.db import open_database, resolve_database_url
from .store.spool import SpoolUnavailable

log = logging.getLogger('postdesk.serve')

MAILBOX_REFRESH_SECONDS = 10
SUPERVISE_SECONDS = 1.0


def tls_context(config: Config) -> ssl.SSLContext | None:
    if not (config.tls_cert and config.tls_key):
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.tls_cert, config.tls_key)
    return context


_CONTEXT = multiprocessing.get_context('fork')


@dataclass
class Workers:
    """The worker processes beside the listeners: intake workers (the spool into tickets), one delivery process
    (the outbox to the relay) when a relay is configured, and one offering process (queued interactions to ready
    agents) when the HTTP API is on. Each is started again if it dies."""
    config: Config
    stop: object
    kinds: list[str]
    processes: list[multiprocessing.Process]

    def start(self, number: int) -> multiprocessing.Process:
        kind = self.kinds[number]
        target = {'intake': run_worker, 'delivery': run_delivery_process, 'offers': run_offers}[kind]
        process = _CONTEXT.Process(target=run_child, args=(target, self.config, self.stop, self.config.shutdown_grace),
                                   daemon=False, name='postdesk-%s-%d' % (kind, number))
        process.start()
        return process


PR_SET_PDEATHSIG = 1


def run_child(target, *args) -> None:
    """A worker process: it is sent SIGTERM when the serving process dies (even by SIGKILL), so that no worker
    outlives the `postdesk serve` it belongs to; then it runs its target."""
    try:
        ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6', use_errno=True).prctl(PR_SET_PDEATHSIG,
                                                                                      signal.SIGTERM)
    except (OSError, AttributeError):
        log.debug('prctl is not available: a worker may outlive its serving process')
    target(*args)


def start_workers(config: Config, intake: int, offers: bool = False) -> Workers:
    """Forked before the event loop starts (they share nothing with it). With the HTTP API, where agents work,
    an offering worker offers queued interactions to them."""
    kinds = ['intake'] * intake + (['delivery'] if config.relay_host else []) + (['offers'] if offers else [])
    workers = Workers(config, _CONTEXT.Event(), kinds, [])
    workers.processes = [workers.start(number) for number in range(len(kinds))]
    if config.relay_host:
        log.info('delivering replies to %s:%s', config.relay_host, config.relay_port)
    else:
        log.info('no SMTP relay configured: replies stay queued (set POSTDESK_SMTP_RELAY=HOST:PORT)')
    return workers


async def supervise(workers: Workers) -> None:
    """Start a worker again when one dies: accepted mail must keep turning into tickets, replies keep going out."""
    while not workers.stop.is_set():
        await asyncio.sleep(SUPERVISE_SECONDS)
        for number, process in enumerate(workers.processes):
            if not process.is_alive() and not workers.stop.is_set():
                log.error('%s (pid %s) exited with %s; starting it again', process.name, process.pid,
                          process.exitcode)
                process.join(0)
                workers.processes[number] = workers.start(number)


def stop_workers(workers: Workers, timeout: float) -> None:
    workers.stop.set()
    for process in workers.processes:
        process.join(timeout)
        if process.is_alive():
            log.warning('%s (pid %d) did not stop in time; terminating it (its work stays in the database)',
                        process.name, process.pid)
            process.terminate()
            process.join(5)


def serve(config: Config, smtp: str | None, lmtp: str | None, workers: int, http: str | None = None) -> int:
    url = resolve_database_url(config.database_url, config.embedded_data)
    open_database(url, config.embedded_data).close()          # the schema, before anyone writes
    config = _with_url(config, url)
    shared = share_metrics()
    running = start_workers(config, workers, offers=bool(http))
    try:
        asyncio.run(_serve(config, smtp, lmtp, running, http))
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):       # asked again while the workers finish: still stopping
            signal.signal(signum, lambda *_: log.info('stopping already; waiting for the workers'))
        stop_workers(running, config.shutdown_grace + 10)
        if shared:
            shutil.rmtree(shared, ignore_errors=True)
    log.info('stopped')
    return 0


def share_metrics() -> str | None:
    """A directory for the metrics of this run's processes, unless the operator named one (kept then)."""
    if metrics.multiprocess_directory():
        return None
    directory = tempfile.mkdtemp(prefix='postdesk-metrics-')
    metrics.use_directory(directory)
    return directory


def _with_url(config: Config, url: str) -> Config:
    return replace(config, database_url=url)


async def _serve(config: Config, smtp: str | None, lmtp: str | None, workers: Workers, http: str | None) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    recipients = Recipients()
    hostname = config.hostname or default_hostname()
    writer = SpoolWriter(config.database_url, config.database_timeout)
    handler = IntakeHandler(config.database_url, writer, recipients, hostname, config.database_timeout)
    servers = await _listen(config, handler, smtp, lmtp, hostname)
    api = await _start_api(config, http, handler)
    refresher = asyncio.create_task(_refresh_mailboxes(recipients, config.database_url, config.database_timeout))
    supervisor = asyncio.create_task(supervise(workers))
    try:
        await stopping.wait()
        log.info('stopping: no new sessions; letting transactions and requests in flight finish')
        for server in servers:
            server.close()
        await asyncio.gather(drain(handler, config.shutdown_grace), api.stop() if api else asyncio.sleep(0))
    finally:
        refresher.cancel()
        supervisor.cancel()
        await writer.close()


async def _start_api(config: Config, http: str | None, handler: IntakeHandler):
    """The HTTP API on this loop (imported only when it is on: an SMTP-only serve never loads FastAPI); it runs
    fewer requests at once while mail is being received."""
    if not http:
        return None
    from .api.server import start_api
    address = parse_listen(http)
    api = await start_api(config, address.host, address.port, mail_active=lambda: handler.transactions > 0)
    handler.on_quiet = api.admission.admit              # requests held back for mail go on once it is done
    return api


async def _listen(config: Config, handler: IntakeHandler, smtp: str | None, lmtp: str | None, hostname: str):
    loop = asyncio.get_running_loop()
    options = dict(data_size_limit=config.max_message_bytes, enable_SMTPUTF8=True, decode_data=False,
                   hostname=hostname, ident='postdesk ESMTP', tls_context=tls_context(config),
                   auth_exclude_mechanism=['LOGIN', 'PLAIN'])
    timeouts = Timeouts(config.idle_timeout, config.min_data_rate, config.data_rate_window,
                        config.max_transaction_time)
    servers = []
    for kind, value in (('SMTP', smtp), ('LMTP', lmtp)):
        if not value:
            continue
        address = parse_listen(value)
        session = SmtpSession if kind == 'SMTP' else LmtpSession
        factory = session_factory(session, handler, config.max_sessions, timeouts, **options)
        if address.path:
            if os.path.exists(address.path):
                os.unlink(address.path)
            servers.append(await loop.create_unix_server(factory, address.path))
            os.chmod(address.path, 0o666)
        else:
            servers.append(await loop.create_server(factory, address.host, address.port, reuse_address=True))
        log.info('%s listening on %s (max %d sessions, %d bytes per message%s)', kind, _bound(servers[-1], address),
                 config.max_sessions, config.max_message_bytes, ', STARTTLS' if options['tls_context'] else '')
    return servers


def _bound(server, address) -> str:
    if address.path:
        return 'unix:%s' % address.path
    host, port = server.sockets[0].getsockname()[:2]
    return '%s:%d' % (host, port)


async def _refresh_mailboxes(recipients: Recipients, url: str, timeout: float) -> None:
    while True:
        try:
            await recipients.refresh(url, timeout)
        except SpoolUnavailable as exc:      # the last list stays in use; retried
            log.warning('cannot refresh the mailbox list (%s); keeping the last one', exc)
        await asyncio.sleep(MAILBOX_REFRESH_SECONDS)
