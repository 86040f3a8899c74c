"""Benchmark: `postdesk replay` end to end into a fresh database, next to the standard library's compat32 parser
alone on the same bytes, measured in the same run, plus the replay's peak memory, its CPU per message (Python:
the command and its parse worker; PostgreSQL: the backends serving it), and the peak memory of `ticket list
--json` over the tickets it made.

usage: python bench/replay.py [--count 2000] [--flat 20000] [--database-url URL]

The corpus is `../shared/bench/gen_corpus.py COUNT DIR` (4 KB multipart messages, 10% with a 100 KB attachment,
30% replies). The replay runs as the real command in a child process (its own peak RSS is reported); the
database is a new one on the server of --database-url / DATABASE_URL / TEST_DATABASE_URL (else the embedded
server), dropped afterwards. With --flat N the replay is repeated on an N-message corpus to show that peak
memory and CPU per message do not grow with the size of the input or of the database. PostgreSQL's CPU is read
from /proc for the backends of the bench database, sampled while the replay runs (PostgreSQL on this machine).
Targets: >= 500 messages/s and >= 0.4 of compat32's parse-only rate; CPU per message at N within 1.3x of the
small run; flat memory, for `ticket list` too.
"""
from __future__ import annotations

import argparse
import dataclasses
import email.parser
import email.policy
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass

import psycopg
from psycopg import conninfo, sql

ROOT = pathlib.Path(__file__).resolve().parent.parent
GENERATOR = ROOT.parent / 'shared' / 'bench' / 'gen_corpus.py'
sys.path.insert(0, str(ROOT))

from ticketing.store.db import start_embedded  # noqa: E402

# Peak memory is VmHWM, the high-water mark of this process's own address space: ru_maxrss would also count
# the parent's pages the child held between fork and exec.
CHILD = '''
import resource, sys, time
from ticketing.cli import main
started = time.perf_counter()
status = main(sys.argv[1:])
elapsed = time.perf_counter() - started
with open('/proc/self/status') as status_file:
    peak_kb = int(status_file.read().split('VmHWM:')[1].split()[0])
cpu = sum(getattr(resource.getrusage(who), field) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
          for field in ('ru_utime', 'ru_stime'))
sys.stderr.write('BENCH %.6f %d %d %.6f\\n' % (elapsed, peak_kb, status, cpu))
'''
TICK = os.sysconf('SC_CLK_TCK')


@dataclass
class Run:
    seconds: float
    peak_kb: int
    status: int
    python_cpu: float
    postgres_cpu: float | None = None         # the backends serving the replay
    maintenance_cpu: float | None = None      # autovacuum's workers on the same database meanwhile
    list_peak_kb: int | None = None


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


def run_postdesk(database_url: str, *args: str, stdout=subprocess.DEVNULL) -> Run:
    """Run a postdesk command in a child process: its seconds, peak RSS in KB, exit status and CPU seconds."""
    env = dict(os.environ, DATABASE_URL=database_url, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, '-c', CHILD, *args], env=env, stdout=stdout, stderr=subprocess.PIPE,
                          text=True, timeout=7200)
    for line in done.stderr.splitlines():
        if line.startswith('BENCH '):
            seconds, peak, status, cpu = line.split()[1:]
            return Run(float(seconds), int(peak), int(status), float(cpu))
    raise RuntimeError('postdesk failed: %s' % done.stderr[-2000:])


class BackendCpu:
    """CPU seconds of the PostgreSQL processes on a database, sampled from /proc while a command runs (the last
    reading of each process counts; its own time is lost only for its last sampling interval): the client
    backends serving the command, and apart from them autovacuum's workers."""

    def __init__(self, url: str, dbname: str):
        self.url, self.dbname = url, dbname
        self.seen: dict[int, float] = {}
        self.maintenance: set[int] = set()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_):
        self.done.set()
        self.thread.join()

    def _sample(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.done.wait(0.1):
                rows = conn.execute('SELECT pid, backend_type FROM pg_stat_activity WHERE datname = %s',
                                    (self.dbname,)).fetchall()
                self.maintenance.update(pid for pid, kind in rows if kind != 'client backend')
                for pid, _ in rows:
                    seconds = cpu_of(pid)
                    if seconds is not None:
                        self.seen[pid] = seconds

    @property
    def seconds(self) -> float | None:
        served = [s for pid, s in self.seen.items() if pid not in self.maintenance]
        return sum(served) if served else None

    @property
    def maintenance_seconds(self) -> float:
        return sum(s for pid, s in self.seen.items() if pid in self.maintenance)


def cpu_of(pid: int) -> float | None:
    try:
        with open('/proc/%d/stat' % pid) as stat:
            fields = stat.read().rsplit(')', 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK


def replay(url: str, corpus: str) -> Run:
    """Replay into a fresh database, then list its tickets; the replay's figures with the listing's peak."""
    name, database_url = fresh_database(url)
    try:
        run_postdesk(database_url, 'mailbox', 'add', 'support@helpdesk.example', '--default')
        with BackendCpu(url, name) as backends:
            result = run_postdesk(database_url, 'replay', corpus)
        listing = run_postdesk(database_url, 'ticket', 'list', '--json')
        return dataclasses.replace(result, postgres_cpu=backends.seconds, list_peak_kb=listing.peak_kb,
                                   maintenance_cpu=backends.maintenance_seconds)
    finally:
        drop_database(url, name)


def per_message(seconds: float | None, count: int) -> str:
    return '%.3f ms' % (seconds * 1000 / count) if seconds is not None else 'n/a'


def ratio(big: float | None, small: float | None) -> str:
    return '%.2fx' % (big / small) if big is not None and small else 'n/a'


def report(run: Run, count: int, label: str) -> None:
    print('replay end to end:           %8.0f msg/s   (%d messages, %.2f s, exit %d)'
          % (count / run.seconds, count, run.seconds, run.status))
    print('  Python CPU per message:    %s    PostgreSQL CPU per message: %s (autovacuum meanwhile: %s)'
          % (per_message(run.python_cpu, count), per_message(run.postgres_cpu, count),
             per_message(run.maintenance_cpu, count)))
    print('  replay peak memory:        %8.1f MB   %s' % (run.peak_kb / 1024, label))
    print('  ticket list peak memory:   %8.1f MB   (ticket list --json over the tickets of this run)'
          % (run.list_peak_kb / 1024))


def main() -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument('--count', type=int, default=2000)
    args.add_argument('--flat', type=int, default=0, help='also replay a corpus of this size (e.g. 100000)')
    args.add_argument('--database-url')
    opts = args.parse_args()
    url = server_url(opts.database_url)
    work = tempfile.mkdtemp(prefix='postdesk-bench-')
    try:
        files = generate(opts.count, os.path.join(work, 'small'))
        size_mb = sum(f.stat().st_size for f in files) / 1e6
        small = replay(url, os.path.join(work, 'small', 'eml'))
        parse_rate = compat32_rate(files)
        print('messages:                    %d (%.1f MB)' % (len(files), size_mb))
        report(small, len(files), '')
        print('compat32 parse only:         %8.0f msg/s   (same bytes, same run)' % parse_rate)
        print('ratio replay / parse only:   %8.2f     (target >= 0.4)' % ((len(files) / small.seconds) / parse_rate))
        if opts.flat:
            big_files = generate(opts.flat, os.path.join(work, 'big'))
            big = replay(url, os.path.join(work, 'big', 'eml'))
            report(big, len(big_files), '(%.2fx the %d-message run)' % (big.peak_kb / small.peak_kb, len(files)))
            print('  per message vs %d:       Python CPU %s, PostgreSQL CPU %s (target <= 1.3x)' % (
                len(files), ratio(big.python_cpu / len(big_files), small.python_cpu / len(files)),
                ratio(big.postgres_cpu / len(big_files) if big.postgres_cpu else None,
                      small.postgres_cpu / len(files) if small.postgres_cpu else None)))
            print('  ticket list peak memory:   %.2fx the %d-message run' % (big.list_peak_kb / small.list_peak_kb,
                                                                            len(files)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
