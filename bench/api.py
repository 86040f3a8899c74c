"""Benchmark: the HTTP API of `postdesk serve --http` on loopback, next to a bare FastAPI app on the same uvicorn
setup answering a constant JSON without a database, measured in the same run.

usage: python bench/api.py [--count 1000] [--connections 16] [--seconds 20] [--slice 2] [--rounds 3]
                          [--database-url URL]

Prints requests per second and p50/p99 latency for
  - GET /bare on the bare app (the ceiling of FastAPI + uvicorn here),
  - an authenticated GET /api/v1/Ticket/{id} (target >= 0.3 of the bare rate),
  - CreateTicketFromMailData of the standard benchmark messages (`../shared/bench/gen_corpus.py COUNT DIR`),
    next to `postdesk replay` of the same messages into a fresh database (target >= 0.5 of replay's
    per-message rate),
and SMTP delivery latency (end of DATA to 250) idle and while the API is saturated by GETs (target: within 2x).

The load client is asyncio on raw keep-alive HTTP/1.1 connections (bounded: `--connections` at once, `--count`
requests or `--seconds`, whichever comes first), in this process; each server runs in its own process, stopped by
its process id. Every figure is measured in each of `--rounds` rounds, each baseline next to what it is compared
with: replay into a fresh database, then Create on another with a new `postdesk serve`, the bare app's GETs and
postdesk's alternated in slices of `--slice` seconds each (three pairs), SMTP idle and then under GETs. The
machine is shared and its speed drifts within seconds, so each ratio is taken within a pair measured back to
back (a round's Create and replay, a slice of bare GETs and the slice of postdesk's after it, a round's SMTP
idle and loaded) and the median of those ratios is reported; the best rate of each kind is printed beside it,
and every round too. Databases are new ones on the server of --database-url / DATABASE_URL /
TEST_DATABASE_URL, dropped afterwards.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import random
import re
import shutil
import smtplib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / 'bench'))

from replay import drop_database, fresh_database, generate, replay, server_url  # noqa: E402
from smtp import send_data, stop  # noqa: E402

MAILBOX = 'support@helpdesk.example.com'
POSTDESK = [sys.executable, '-c', 'import sys; from ticketing.cli import main; sys.exit(main())']
BARE_APP = '''
import asyncio, logging, sys
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from ticketing.api.server import EmbeddedServer, bind, uvicorn_config
from ticketing.config import Config
app = FastAPI()
@app.get('/bare')
async def bare():
    return JSONResponse({'status': 'ok', 'TicketId': 1, 'Title': 'constant'})
async def main():
    sock = bind('127.0.0.1', 0)
    server = EmbeddedServer(uvicorn_config(app, Config()))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    print('HTTP listening on 127.0.0.1:%d' % sock.getsockname()[1], flush=True)
    await task
asyncio.run(main())
'''


def start_http(command: list[str], env: dict) -> tuple[subprocess.Popen, dict[str, int]]:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: list[str] = []
    threading.Thread(target=lambda: [lines.append(line) for line in process.stdout], daemon=True).start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ports = {kind: int(found.group(1)) for kind in ('HTTP', 'SMTP')
                 for found in [re.search(r'%s listening on 127\.0\.0\.1:(\d+)' % kind, ''.join(lines))] if found}
        if 'HTTP' in ports and ('serve' not in command or 'SMTP' in ports):
            return process, ports
        if process.poll() is not None:
            break
        time.sleep(0.05)
    stop(process)
    raise RuntimeError('server did not start: %s' % ''.join(lines[-20:]))


# ------------------------------------------------------------------------------------------ the load client

async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b'\r\n\r\n')
    status = int(head[9:12])
    length = re.search(rb'(?im)^content-length:\s*(\d+)', head)
    await reader.readexactly(int(length.group(1)) if length else 0)
    return status


async def connection(port: int, requests, results: list, deadline: float) -> None:
    reader, writer = await asyncio.open_connection('127.0.0.1', port)
    try:
        for request in requests:
            if time.monotonic() > deadline:
                return
            started = time.perf_counter()
            writer.write(request)
            status = await read_response(reader)
            results.append((status, time.perf_counter() - started))
    finally:
        writer.close()


def http_request(method: str, path: str, token: str | None = None, body: bytes = b'') -> bytes:
    headers = ['%s %s HTTP/1.1' % (method, path), 'Host: 127.0.0.1']
    if token:
        headers.append('Authorization: Bearer %s' % token)
    if body:
        headers += ['Content-Type: application/json', 'Content-Length: %d' % len(body)]
    return ('\r\n'.join(headers) + '\r\n\r\n').encode() + body


def load(port: int, requests: list[bytes], connections: int, seconds: float) -> dict:
    """Send the requests over `connections` keep-alive connections; rate and latency of those answered."""
    results: list = []
    shares = [requests[n::connections] for n in range(connections)]
    started = time.perf_counter()
    deadline = time.monotonic() + seconds

    async def run():
        await asyncio.gather(*(connection(port, share, results, deadline) for share in shares))
    asyncio.run(run())
    elapsed = time.perf_counter() - started
    latencies = sorted(latency for _, latency in results)
    statuses = {status for status, _ in results}
    return {'rate': len(results) / elapsed, 'p50': percentile(latencies, 50), 'p99': percentile(latencies, 99),
            'count': len(results), 'statuses': sorted(statuses)}


def percentile(values: list[float], pct: int) -> float:
    if not values:
        return float('nan')
    return values[min(len(values) - 1, int(len(values) * pct / 100))]


def show(name: str, result: dict) -> None:
    print('%-44s %8.0f req/s   p50 %6.2f ms   p99 %6.2f ms   (%d requests, status %s)' % (
        name, result['rate'], result['p50'] * 1000, result['p99'] * 1000, result['count'], result['statuses']))


# ------------------------------------------------------------------------------------------ SMTP while loaded

def smtp_latency(port: int, message: bytes, count: int) -> float:
    """p50 seconds from the end of DATA to the 250, one connection, one message after the other."""
    latencies = []
    with smtplib.SMTP('127.0.0.1', port, timeout=30) as client:
        client.ehlo('bench.example')
        for _ in range(count):
            client.mail('customer@example.com')
            client.rcpt(MAILBOX)
            latencies.append(send_data(client, message))
    return statistics.median(latencies)


def smtp_under_load(ports: dict, message: bytes, get_requests: list[bytes], connections: int,
                    seconds: float) -> tuple[float, float]:
    idle = smtp_latency(ports['SMTP'], message, 50)
    loaded: list[float] = []
    sender = threading.Thread(target=lambda: (time.sleep(1), loaded.append(smtp_latency(ports['SMTP'], message,
                                                                                        50))))
    sender.start()
    load(ports['HTTP'], get_requests * 50, connections, seconds)
    sender.join()
    return idle, loaded[0] if loaded else float('nan')


# ------------------------------------------------------------------------------------------ the run

def postdesk_command(env: dict, *args: str) -> str:
    return subprocess.run(POSTDESK + list(args), env=env, capture_output=True, text=True, check=True).stdout


def setup(env: dict) -> str:
    """The mailbox and an agent of it; the agent's token."""
    postdesk_command(env, 'mailbox', 'add', MAILBOX, '--default')
    return json.loads(postdesk_command(env, 'agent', 'add', 'bench', '--mailbox', MAILBOX, '--json'))['Token']


def ticket_ids(port: int, token: str) -> list[int]:
    """The ids of (up to 500 of) the tickets the Create run made, read from the API's own list: ticket ids have
    gaps (ids taken for messages that became follow-ups), and a GET of a missing one would be a cheaper 404."""
    request = urllib.request.Request('http://127.0.0.1:%d/api/v1/Ticket?$top=500' % port,
                                     headers={'Authorization': 'Bearer %s' % token})
    with urllib.request.urlopen(request, timeout=30) as response:
        return [item['TicketId'] for item in json.load(response)['items']]


def create_requests(files: list[pathlib.Path], token: str) -> list[bytes]:
    bodies = [json.dumps({'MailboxId': 1, 'Data': f.read_bytes().decode('utf-8', 'surrogateescape')},
                         ensure_ascii=True).encode() for f in files]
    return [http_request('POST', '/api/v1/Agents/CustomerService/CreateTicketFromMailData', token, b) for b in bodies]


SLICES = 3          # pairs of bare and postdesk GET slices in a round


@dataclass
class Round:
    """One round's figures: each baseline measured next to what it is compared with."""
    replay_rate: float
    created: dict
    gets: list[tuple[dict, dict]]         # (the bare app's slice, postdesk's slice after it)
    smtp_idle: float
    smtp_loaded: float


def paired_gets(bare_port: int, http_port: int, gets: list[bytes], args) -> list[tuple[dict, dict]]:
    """The bare app's GETs and postdesk's, alternated in slices of `args.slice` seconds (bounded in count too),
    so that each pair sees the machine as it was for both."""
    bare_requests = [http_request('GET', '/bare')] * (args.count * 100)
    return [(load(bare_port, bare_requests, args.connections, args.slice),
             load(http_port, gets, args.connections, args.slice)) for _ in range(SLICES)]


def measure_round(url: str, corpus: str, files: list[pathlib.Path], bare_port: int, args) -> Round:
    """replay into a fresh database, then a fresh database and `postdesk serve` for Create, the GETs of its
    tickets alternated with the bare app's, and SMTP idle and under those GETs; the server is stopped by its process id
    and its database dropped whatever fails."""
    replay_rate = len(files) / replay(url, corpus).seconds
    name, database_url = fresh_database(url)
    env = dict(os.environ, DATABASE_URL=database_url, PYTHONPATH=str(ROOT), POSTDESK_SHUTDOWN_GRACE='5')
    postdesk = None
    try:
        token = setup(env)
        postdesk, ports = start_http(POSTDESK + ['serve', '--http', '127.0.0.1:0', '--smtp', '127.0.0.1:0',
                                                 '--lmtp', 'off'], env)
        created = load(ports['HTTP'], create_requests(files, token), min(8, args.connections), args.seconds * 6)
        ids = ticket_ids(ports['HTTP'], token)
        gets = [http_request('GET', '/api/v1/Ticket/%d' % random.choice(ids), token) for _ in range(args.count * 20)]
        paired = paired_gets(bare_port, ports['HTTP'], gets, args)
        idle, loaded = smtp_under_load(ports, files[0].read_bytes(), gets[:200], args.connections, args.seconds)
        return Round(replay_rate, created, paired, idle, loaded)
    finally:
        if postdesk is not None:
            stop(postdesk)
        drop_database(url, name)


def report(rounds: list[Round], count: int) -> None:
    """The median of the ratios of pairs measured back to back, and the best rate of each kind beside it (the
    machine's other load only ever slows a measurement down)."""
    pairs = [pair for r in rounds for pair in r.gets]
    show('CreateTicketFromMailData (%d messages)' % count, max([r.created for r in rounds], key=lambda c: c['rate']))
    print('%-44s %8.0f messages/s' % ('postdesk replay of the same messages', max(r.replay_rate for r in rounds)))
    show('bare FastAPI GET /bare', max([bare for bare, _ in pairs], key=lambda b: b['rate']))
    show('GET /api/v1/Ticket/{id}, Bearer', max([get for _, get in pairs], key=lambda g: g['rate']))
    print('SMTP end of DATA to 250, p50: idle %.2f ms, API saturated %.2f ms' % (
        min(r.smtp_idle for r in rounds) * 1000, min(r.smtp_loaded for r in rounds) * 1000))
    for number, r in enumerate(rounds, 1):
        print('  round %d: Create %.0f/s, replay %.0f/s, bare/GET %s, SMTP idle %.2f ms, loaded %.2f ms' % (
            number, r.created['rate'], r.replay_rate,
            ', '.join('%.0f/%.0f' % (bare['rate'], get['rate']) for bare, get in r.gets),
            r.smtp_idle * 1000, r.smtp_loaded * 1000))
    get_bare = statistics.median(get['rate'] / bare['rate'] for bare, get in pairs)
    create_replay = statistics.median(r.created['rate'] / r.replay_rate for r in rounds)
    loaded_idle = statistics.median(r.smtp_loaded / r.smtp_idle for r in rounds)
    print('ratios (medians of pairs measured back to back): GET/bare %.2f (target >= 0.3), Create/replay %.2f '
          '(target >= 0.5), SMTP loaded/idle %.2f (target <= 2)' % (get_bare, create_replay, loaded_idle))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--count', type=int, default=1000, help='benchmark messages (and GETs per round x 5)')
    parser.add_argument('--connections', type=int, default=16)
    parser.add_argument('--seconds', type=float, default=20.0, help='at most this long per measurement')
    parser.add_argument('--slice', type=float, default=2.0, help='seconds of each bare or postdesk GET slice')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--database-url')
    args = parser.parse_args()
    url = server_url(args.database_url)
    corpus = tempfile.mkdtemp(prefix='postdesk-bench-api-')
    files = generate(args.count, corpus)
    bare = None
    try:
        bare, bare_ports = start_http([sys.executable, '-c', BARE_APP], dict(os.environ, PYTHONPATH=str(ROOT)))
        report([measure_round(url, corpus, files, bare_ports['HTTP'], args) for _ in range(args.rounds)],
               len(files))
    finally:
        if bare is not None:
            stop(bare)
        shutil.rmtree(corpus, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
