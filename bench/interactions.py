"""Benchmark: agents' work through the HTTP API of two `postdesk serve` processes on one database, and the latency
of its CometD notifications, next to a bare PostgreSQL NOTIFY round trip measured in the same run.

usage: python bench/interactions.py [--agents 4] [--count 300] [--changes 200] [--seconds 120] [--database-url URL]

Prints:
  - accept-to-complete cycles per second: `--count` standard benchmark messages (`../shared/bench/gen_corpus.py`)
    are queued, `--agents` agents (half on each process) get ready, accept what they are offered and complete
    it, until all are completed or `--seconds` have passed;
  - notification latency (p50, p99): `--changes` user data updates made one after the other through the first
    process, each timed from the moment its HTTP answer arrived (the change is committed by then) to the moment
    the CometD client (aiocometd-ng) connected to the second process received it;
  - a bare NOTIFY round trip on the same server: a LISTENing connection receiving another connection's NOTIFY.
Servers run in their own processes and are stopped by their process id; the database is a new one, dropped.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import httpx
import psycopg

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / 'bench'))

from api import POSTDESK, start_http  # noqa: E402
from replay import drop_database, fresh_database, generate, server_url  # noqa: E402
from smtp import stop  # noqa: E402

MAILBOX = 'support@helpdesk.example.com'


def postdesk(env: dict, *args: str) -> str:
    done = subprocess.run(POSTDESK + list(args), env=env, capture_output=True, text=True, timeout=600)
    if done.returncode not in (0, 1):
        raise RuntimeError('postdesk %s failed: %s' % (' '.join(args), done.stderr[-2000:]))
    return done.stdout


def percentile(values: list[float], pct: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))] if ordered else float('nan')


def agent_loop(port: int, token: str, done: threading.Event, cycles: list) -> None:
    """Ready; accept every invitation and complete every accepted interaction, until `done`."""
    with httpx.Client(base_url='http://127.0.0.1:%d' % port, timeout=30,
                      headers={'Authorization': 'Bearer %s' % token}) as client:
        client.post('/api/v2/me/channels/email', json={'operationName': 'Ready'})
        while not done.is_set():
            mine = client.get('/api/v2/me/interactions', params={'fields': '*'}).json()['interactions']
            for item in mine:
                operation = 'Accept' if item['state'] == 'Invited' else 'Complete'
                answer = client.post('/api/v2/me/interactions/%s' % item['id'], json={'operationName': operation})
                if operation == 'Complete' and answer.status_code == 200:
                    cycles.append(time.monotonic())
            if not mine:
                time.sleep(0.02)


def measure_cycles(ports: list[int], tokens: list[str], count: int, seconds: float) -> tuple[int, float]:
    done, cycles = threading.Event(), []
    threads = [threading.Thread(target=agent_loop, args=(ports[n % len(ports)], token, done, cycles))
               for n, token in enumerate(tokens)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    while len(cycles) < count and time.monotonic() - started < seconds:
        time.sleep(0.05)
    elapsed = (cycles[-1] if cycles else time.monotonic()) - started
    done.set()
    for thread in threads:
        thread.join(60)
    return len(cycles), elapsed


async def notification_latencies(first: int, second: int, token: str, interaction_id: str, changes: int) -> list:
    from aiocometd_ng import Client, ConnectionType
    from aiocometd_ng.extensions import AuthExtension

    class Bearer(AuthExtension):
        async def outgoing(self, payload, headers):
            headers['Authorization'] = 'Bearer %s' % token

        async def incoming(self, payload, headers=None):
            return None

        async def authenticate(self):
            return None
    answered: dict[int, float] = {}
    latencies: list[float] = []
    url = 'http://127.0.0.1:%d/api/v2/notifications' % second
    async with Client(url, ConnectionType.LONG_POLLING, auth=Bearer()) as client:
        await client.subscribe('/v2/me/interactions')
        changer = asyncio.create_task(asyncio.to_thread(make_changes, first, token, interaction_id, changes, answered))
        async for message in client:
            step = message['data']['interaction']['userData'].get('step')
            if step is not None and step in answered:
                latencies.append(time.perf_counter() - answered[step])
            if step == changes - 1:
                break
        await changer
    return latencies


def make_changes(port: int, token: str, interaction_id: str, changes: int, answered: dict) -> None:
    with httpx.Client(base_url='http://127.0.0.1:%d' % port, timeout=30,
                      headers={'Authorization': 'Bearer %s' % token}) as client:
        for step in range(changes):
            client.post('/api/v2/me/interactions/%s' % interaction_id,
                        json={'operationName': 'UpdateUserData', 'userData': {'step': step}})
            answered[step] = time.perf_counter()
            time.sleep(0.01)


def notify_round_trips(database_url: str, count: int) -> list[float]:
    times = []
    with psycopg.connect(database_url, autocommit=True) as listener, \
            psycopg.connect(database_url, autocommit=True) as sender:
        listener.execute('LISTEN bench_round_trip')
        for _ in range(count):
            started = time.perf_counter()
            sender.execute("NOTIFY bench_round_trip, 'x'")
            for _ in listener.notifies(timeout=5, stop_after=1):
                times.append(time.perf_counter() - started)
    return times


def accepted_interaction(port: int, token: str, seconds: float = 30) -> str:
    with httpx.Client(base_url='http://127.0.0.1:%d' % port, timeout=30,
                      headers={'Authorization': 'Bearer %s' % token}) as client:
        client.post('/api/v2/me/channels/email', json={'operationName': 'Ready'})
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for item in client.get('/api/v2/me/interactions', params={'fields': '*'}).json()['interactions']:
                if item['state'] == 'Invited':
                    client.post('/api/v2/me/interactions/%s' % item['id'], json={'operationName': 'Accept'})
                    client.post('/api/v2/me/channels/email', json={'operationName': 'NotReady'})
                    return item['id']
            time.sleep(0.05)
    raise RuntimeError('no interaction was offered')


def run(opts, url: str, work: str) -> None:
    name, database_url = fresh_database(url)
    env = dict(os.environ, DATABASE_URL=database_url, PYTHONPATH=str(ROOT), POSTDESK_SHUTDOWN_GRACE='5')
    servers = []
    try:
        postdesk(env, 'mailbox', 'add', MAILBOX, '--default')
        tokens = [json.loads(postdesk(env, 'agent', 'add', 'agent%d' % n, '--mailbox', MAILBOX, '--queue', MAILBOX,
                                      '--json'))['Token'] for n in range(opts.agents + 1)]
        generate(opts.count + 1, os.path.join(work, 'corpus'))
        postdesk(env, 'replay', '--quiet', os.path.join(work, 'corpus', 'eml'))
        command = POSTDESK + ['serve', '--smtp', '127.0.0.1:0', '--lmtp', 'off', '--http', '127.0.0.1:0']
        servers = [start_http(command, env) for _ in range(2)]
        ports = [ports['HTTP'] for _, ports in servers]
        watched = accepted_interaction(ports[0], tokens[-1])
        with psycopg.connect(database_url) as conn:       # replies onto open work are not work of their own
            queued = conn.execute("SELECT count(*) FROM interaction WHERE state = 'Queued'").fetchone()[0]
        done, elapsed = measure_cycles(ports, tokens[:-1], queued, opts.seconds)
        print('accept-to-complete cycles:    %8.1f per second   (%d in %.1f s, %d agents on 2 processes)'
              % (done / elapsed if elapsed > 0 else 0, done, elapsed, opts.agents))
        latencies = asyncio.run(notification_latencies(ports[0], ports[1], tokens[-1], watched, opts.changes))
        trips = notify_round_trips(database_url, opts.changes)
        print('notification, process 1 -> CometD client of process 2: p50 %6.2f ms   p99 %6.2f ms   (%d changes)'
              % (percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000, len(latencies)))
        print('bare PostgreSQL NOTIFY round trip:                      p50 %6.2f ms   p99 %6.2f ms'
              % (percentile(trips, 50) * 1000, percentile(trips, 99) * 1000))
        print('ratio p50 notification / bare NOTIFY: %.1f' % (statistics.median(latencies) / statistics.median(trips)))
    finally:
        for process, _ in servers:
            stop(process)
        drop_database(url, name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--agents', type=int, default=4)
    parser.add_argument('--count', type=int, default=300, help='interactions to work through')
    parser.add_argument('--changes', type=int, default=200, help='changes timed for notification latency')
    parser.add_argument('--seconds', type=float, default=120.0, help='at most this long for the cycles')
    parser.add_argument('--database-url')
    opts = parser.parse_args()
    url = server_url(opts.database_url)
    with tempfile.TemporaryDirectory(prefix='postdesk-bench-') as work:
        run(opts, url, work)
    return 0


if __name__ == '__main__':
    sys.exit(main())
