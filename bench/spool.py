"""Benchmark: the spool worker's CPU per message, for messages to one and to two recipient mailboxes.

usage: python bench/spool.py [--count 1000] [--rounds 3] [--database-url URL]

The standard corpus (`../shared/bench/gen_corpus.py COUNT DIR`) is put in the spool of a fresh database as
SMTP would leave it (pending rows with their envelope), once with one recipient mailbox per message and once
with two; a child process then runs the intake worker's processing until the spool is empty and reports its
own CPU seconds (Python) and the wall time. Rounds alternate one and two mailboxes; the best round of each is
printed. A message to two mailboxes makes two tickets, so its cost per message is compared with the cost of
one mailbox: parsing it once, its per-message CPU stays well under twice that.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import pathlib
import subprocess
import sys
import tempfile
import uuid

import psycopg
from psycopg import conninfo, sql

ROOT = pathlib.Path(__file__).resolve().parent.parent
GENERATOR = ROOT.parent / 'shared' / 'bench' / 'gen_corpus.py'
sys.path.insert(0, str(ROOT))

from ticketing.store.db import ensure_schema, start_embedded  # noqa: E402

MAILBOXES = ('support@helpdesk.example', 'sales@helpdesk.example')
CHILD = '''
import sys, time
from ticketing.config import Config
from ticketing.mail.worker import DirectoryCache, process_pending
from ticketing.store.db import connect
conn = connect(sys.argv[1], autocommit=True)
config = Config(database_url=sys.argv[1])
mailboxes = DirectoryCache()
cpu, wall = time.process_time(), time.perf_counter()
stored = 0
while True:
    done = process_pending(conn, config, mailboxes, config.batch_size)
    if not done:
        break
    stored += len(done)
print('BENCH %f %f %d' % (time.process_time() - cpu, time.perf_counter() - wall, stored), file=sys.stderr)
'''


def server_url(given: str | None) -> str:
    url = given or os.environ.get('DATABASE_URL') or os.environ.get('TEST_DATABASE_URL')
    return url or start_embedded('/var/tmp/postdesk-bench-%d/pgdata' % os.getuid())


def corpus(count: int, folder: str) -> list[bytes]:
    subprocess.run([sys.executable, str(GENERATOR), str(count), folder], check=True, capture_output=True)
    return [p.read_bytes() for p in sorted(pathlib.Path(folder).rglob('*.eml'))]


def spooled_database(url: str, messages: list[bytes], recipients: tuple[str, ...]) -> tuple[str, str]:
    """A new database with the mailboxes and every message pending in the spool; (name, its URL)."""
    name = 'postdesk_bench_%s' % uuid.uuid4().hex[:8]
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(sql.SQL('CREATE DATABASE {}').format(sql.Identifier(name)))
    params = conninfo.conninfo_to_dict(url)
    params['dbname'] = name
    database_url = conninfo.make_conninfo(**params)
    with psycopg.connect(database_url, autocommit=True) as conn:
        ensure_schema(conn)
        for address in MAILBOXES:
            conn.execute('INSERT INTO mailbox (address) VALUES (%s)', (address,))
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO raw_message (sha256, data, size, source, envelope_from, envelope_to, "
                            "state) VALUES (%s, %s, %s, 'smtp', 'bench@customer.example', %s, 'pending')",
                            [(hashlib.sha256(m).digest(), m, len(m), list(recipients)) for m in messages])
    return name, database_url


def drop_database(url: str, name: str) -> None:
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(sql.SQL('DROP DATABASE IF EXISTS {} WITH (FORCE)').format(sql.Identifier(name)))


def run_worker(database_url: str) -> tuple[float, float, int]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, '-c', CHILD, database_url], env=env, capture_output=True, text=True,
                          timeout=1800)
    for line in done.stderr.splitlines():
        if line.startswith('BENCH '):
            cpu, wall, stored = line.split()[1:]
            return float(cpu), float(wall), int(stored)
    raise RuntimeError('the worker failed: %s' % done.stderr[-2000:])


def measure(url: str, messages: list[bytes], recipients: tuple[str, ...]) -> tuple[float, float, int]:
    name, database_url = spooled_database(url, messages, recipients)
    try:
        return run_worker(database_url)
    finally:
        drop_database(url, name)


def main() -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument('--count', type=int, default=1000)
    args.add_argument('--rounds', type=int, default=3)
    args.add_argument('--database-url')
    opts = args.parse_args()
    url = server_url(opts.database_url)
    with tempfile.TemporaryDirectory(prefix='postdesk-bench-') as work:
        messages = corpus(opts.count, work)
    best = {1: None, 2: None}
    for _ in range(max(1, opts.rounds)):
        for mailboxes in (1, 2):
            cpu, wall, stored = measure(url, messages, MAILBOXES[:mailboxes])
            if best[mailboxes] is None or cpu < best[mailboxes][0]:
                best[mailboxes] = (cpu, wall, stored)
    for mailboxes, (cpu, wall, stored) in best.items():
        print('%d mailbox%s: %7.3f ms CPU per message, %6.0f msg/s (%d outcomes)'
              % (mailboxes, 'es' if mailboxes > 1 else '  ', cpu * 1000 / len(messages), len(messages) / wall,
                 stored))
    print('CPU per message, two mailboxes / one: %.2f' % (best[2][0] / best[1][0]))
    return 0


if __name__ == '__main__':
    sys.exit(main())
