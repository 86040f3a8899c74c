"""Benchmark: `postdesk replay` end to end into a fresh database, next to the standard library's compat32 parser
alone on the same bytes, measured in the same run, plus the replay's peak memory.

usage: python bench/replay.py [--count 2000] [--flat 20000] [--database-url URL]

The corpus is `../shared/bench/gen_corpus.py COUNT DIR` (4 KB multipart messages, 10% with a 100 KB attachment,
30% replies). The replay runs as the real command in a child process (its own peak RSS is reported); the
database is a new one on the server of --database-url / DATABASE_URL / TEST_DATABASE_URL (else the embedded
server), dropped afterwards. With --flat N the replay is repeated on an N-message corpus to show that peak
memory does not grow with the size of the input. Targets: >= 500 messages/s; flat memory.
"""
from __future__ import annotations

import argparse
import email.parser
import email.policy
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

import psycopg
from psycopg import conninfo, sql

ROOT = pathlib.Path(__file__).resolve().parent.parent
GENERATOR = ROOT.parent / 'shared' / 'bench' / 'gen_corpus.py'
sys.path.insert(0, str(ROOT))

from ticketing.store.db import start_embedded  # noqa: E402

# Peak memory is VmHWM, the high-water mark of this process's own address space: ru_maxrss would also count
# the parent's pages the child held between fork and exec.
CHILD = '''
import sys, time
from ticketing.cli import main
started = time.perf_counter()
status = main(sys.argv[1:])
elapsed = time.perf_counter() - started
with open('/proc/self/status') as status_file:
    peak_kb = int(status_file.read().split('VmHWM:')[1].split()[0])
sys.stderr.write('BENCH %.6f %d %d\\n' % (elapsed, peak_kb, status))
'''


def generate(count: int, folder: str) -> list[pathlib.Path]:
    subprocess.run([sys.executable, str(GENERATOR), str(count), folder], check=True, stdout=subprocess.DEVNULL)
    return sorted(pathlib.Path(folder).rglob('*.eml'))


def compat32_rate(files: list[pathlib.Path]) -> float:
    raws = [f.read_bytes() for f in files]
    parser = email.parser.BytesParser(policy=email.policy.compat32)
    best = float('inf')
    for _ in range(3):
        started = time.perf_counter()
        for raw in raws:
            parser.parsebytes(raw)
        best = min(best, time.perf_counter() - started)
    return len(raws) / best


def server_url(explicit: str | None) -> str:
    url = explicit or os.environ.get('DATABASE_URL') or os.environ.get('TEST_DATABASE_URL')
    return url or start_embedded('/var/tmp/postdesk-bench-%d/pgdata' % os.getuid())


def fresh_database(url: str) -> tuple[str, str]:
    name = 'postdesk_bench_%s' % uuid.uuid4().hex[:8]
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(sql.SQL('CREATE DATABASE {}').format(sql.Identifier(name)))
    params = conninfo.conninfo_to_dict(url)
    params['dbname'] = name
    return name, conninfo.make_conninfo(**params)


def drop_database(url: str, name: str) -> None:
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(sql.SQL('DROP DATABASE IF EXISTS {} WITH (FORCE)').format(sql.Identifier(name)))


def run_postdesk(database_url: str, *args: str) -> tuple[float, int, int]:
    """Run a postdesk command in a child process; (seconds, peak RSS in KB, exit status)."""
    env = dict(os.environ, DATABASE_URL=database_url, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, '-c', CHILD, *args], env=env, capture_output=True, text=True,
                          timeout=1800)
    for line in done.stderr.splitlines():
        if line.startswith('BENCH '):
            seconds, peak, status = line.split()[1:]
            return float(seconds), int(peak), int(status)
    raise RuntimeError('postdesk failed: %s' % done.stderr[-2000:])


def replay(url: str, corpus: str) -> tuple[float, int, int]:
    name, database_url = fresh_database(url)
    try:
        run_postdesk(database_url, 'mailbox', 'add', 'support@helpdesk.example', '--default')
        return run_postdesk(database_url, 'replay', corpus)
    finally:
        drop_database(url, name)


def main() -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument('--count', type=int, default=2000)
    args.add_argument('--flat', type=int, default=0, help='also replay a corpus of this size (e.g. 20000)')
    args.add_argument('--database-url')
    opts = args.parse_args()
    url = server_url(opts.database_url)
    work = tempfile.mkdtemp(prefix='postdesk-bench-')
    try:
        files = generate(opts.count, os.path.join(work, 'small'))
        size_mb = sum(f.stat().st_size for f in files) / 1e6
        seconds, peak_kb, status = replay(url, os.path.join(work, 'small', 'eml'))
        parse_rate = compat32_rate(files)
        print('messages:                    %d (%.1f MB)' % (len(files), size_mb))
        print('replay end to end:           %8.0f msg/s   (%.2f s, exit %d; target >= 500 msg/s)'
              % (len(files) / seconds, seconds, status))
        print('compat32 parse only:         %8.0f msg/s   (same bytes, same run)' % parse_rate)
        print('ratio replay / parse only:   %8.2f' % ((len(files) / seconds) / parse_rate))
        print('replay peak memory:          %8.1f MB   (%d messages)' % (peak_kb / 1024, len(files)))
        if opts.flat:
            big = generate(opts.flat, os.path.join(work, 'big'))
            seconds_big, peak_big, status_big = replay(url, os.path.join(work, 'big', 'eml'))
            print('replay end to end:           %8.0f msg/s   (%d messages, exit %d)'
                  % (len(big) / seconds_big, len(big), status_big))
            print('replay peak memory:          %8.1f MB   (%d messages; %.2fx the %d-message run)'
                  % (peak_big / 1024, len(big), peak_big / peak_kb, len(files)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
