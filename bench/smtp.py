"""Benchmark: `postdesk serve` accepting mail over SMTP on loopback, next to an aiosmtpd server whose handler
answers 250 without storing anything, measured in the same run (target >= 0.6 of the null rate).

usage: python bench/smtp.py [--connections 8] [--count 3000] [--rounds 3] [--seconds 60] [--database-url URL]

8 persistent client connections (threads) send the ~4 KB messages of `../shared/bench/gen_corpus.py` (those
without the 100 KB attachment) round robin until `--count` messages are accepted or `--seconds` pass. It prints
accepted messages per second and the p50/p99 time from the end of DATA (the final `.`) to the `250`. postdesk
runs as the real command with a fresh database (dropped afterwards) and its intake worker turning the spool into
tickets at the same time; both servers run in their own process and are stopped by process id.

The machine is shared and its speed drifts by tens of percent from one second to the next, so the two servers
are measured in interleaved rounds (null, postdesk, null, postdesk ...) and the best round of each is compared;
before each null round postdesk's spool is drained (its tickets made), so that its intake worker never runs
during the null handler's round.
BENCH_SERVE_ARGS adds arguments to `postdesk serve` (`--workers 0` measures the accepting stage alone).
"""
from __future__ import annotations

import argparse
import os
import pathlib
import re
import shutil
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / 'bench'))

from replay import drop_database, fresh_database, generate, server_url  # noqa: E402

MAILBOX = 'support@helpdesk.example.com'
DOT_AT_LINE_START = re.compile(rb'(?m)^\.')
EXTRA = os.environ.get('BENCH_SERVE_ARGS', '').split()
POSTDESK = [sys.executable, '-c', 'import sys; from ticketing.cli import main; sys.exit(main())']
NULL_SERVER = '''
import asyncio, sys
from aiosmtpd.smtp import SMTP
class Null:
    async def handle_DATA(self, server, session, envelope):
        return '250 2.0.0 Ok: discarded'
async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(Null(), data_size_limit=26214400, enable_SMTPUTF8=True),
                                      '127.0.0.1', 0)
    print('SMTP listening on 127.0.0.1:%d' % server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
'''


def small_messages(folder: str) -> list[bytes]:
    files = sorted(pathlib.Path(folder).rglob('*.eml'))
    return [data for data in (f.read_bytes() for f in files) if len(data) < 16384]


def start(command: list[str], env: dict) -> tuple[subprocess.Popen, int, list[str]]:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: list[str] = []
    threading.Thread(target=lambda: [lines.append(line) for line in process.stdout], daemon=True).start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for line in list(lines):
            found = re.search(r'SMTP listening on 127\.0\.0\.1:(\d+)', line)
            if found:
                return process, int(found.group(1)), lines
        if process.poll() is not None:
            break
        time.sleep(0.05)
    stop(process)
    raise RuntimeError('server did not start: %s' % ''.join(lines[-20:]))


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


def send_data(client: smtplib.SMTP, message: bytes) -> float:
    """DATA with the timing taken from the end of the message (the final dot) to the reply."""
    client.putcmd('data')
    code, _ = client.getreply()
    if code != 354:
        raise smtplib.SMTPDataError(code, b'DATA refused')
    payload = DOT_AT_LINE_START.sub(b'..', message)          # RFC 5321 4.5.2 transparency; the corpus is CRLF
    payload += (b'' if payload.endswith(b'\r\n') else b'\r\n') + b'.\r\n'
    started = time.perf_counter()                             # the message and its final dot go in one write
    client.send(payload)
    code, reply = client.getreply()
    elapsed = time.perf_counter() - started
    if code != 250:
        raise smtplib.SMTPDataError(code, reply)
    return elapsed


def load(port: int, messages: list[bytes], connections: int, count: int, seconds: float) -> dict:
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    failures: list[str] = []

    def sender(offset: int) -> None:
        try:
            with smtplib.SMTP('127.0.0.1', port, timeout=30) as client:
                client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                client.ehlo('bench.example')
                i = offset
                while time.monotonic() < deadline:
                    with lock:
                        if len(latencies) >= count:
                            return
                    client.mail('customer@example.com')
                    client.rcpt(MAILBOX)
                    latency = send_data(client, messages[i % len(messages)])
                    with lock:
                        latencies.append(latency)
                    i += connections
        except (smtplib.SMTPException, OSError) as error:
            failures.append(repr(error))

    started = time.monotonic()
    threads = [threading.Thread(target=sender, args=(n,)) for n in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    ordered = sorted(latencies)
    return {'accepted': len(latencies), 'seconds': elapsed, 'rate': len(latencies) / elapsed,
            'p50': statistics.median(ordered) * 1000 if ordered else float('nan'),
            'p99': ordered[int(len(ordered) * 0.99) - 1] * 1000 if ordered else float('nan'), 'failures': failures}


def main() -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument('--connections', type=int, default=8)
    args.add_argument('--count', type=int, default=3000, help='messages per round')
    args.add_argument('--rounds', type=int, default=3)
    args.add_argument('--seconds', type=float, default=60)
    args.add_argument('--database-url')
    opts = args.parse_args()
    work = tempfile.mkdtemp(prefix='postdesk-bench-smtp-')
    url = server_url(opts.database_url)
    name, database_url = fresh_database(url)
    try:
        generate(2000, os.path.join(work, 'corpus'))
        messages = small_messages(os.path.join(work, 'corpus'))
        env = dict(os.environ, DATABASE_URL=database_url, PYTHONPATH=str(ROOT))
        subprocess.run([*POSTDESK, 'mailbox', 'add', MAILBOX, '--default'], env=env, check=True, capture_output=True)
        null, null_port, _ = start([sys.executable, '-c', NULL_SERVER], env)
        serve, port, log = start([*POSTDESK, 'serve', '--smtp', '127.0.0.1:0', '--lmtp', 'off', *EXTRA], env)
        baselines, results = [], []
        try:
            for _ in range(opts.rounds):
                wait_for_empty_spool(database_url, opts.seconds)
                baselines.append(load(null_port, messages, opts.connections, opts.count, opts.seconds))
                results.append(load(port, messages, opts.connections, opts.count, opts.seconds))
            drained = wait_for_empty_spool(database_url, opts.seconds)
        finally:
            stop(serve)
            stop(null)
        baseline = max(baselines, key=lambda r: r['rate'])
        measured = max(results, key=lambda r: r['rate'])
        measured['failures'] = [f for r in results for f in r['failures']]
        report(baseline, measured, len(messages), opts.connections)
        print('rounds (msg/s): null %s; postdesk %s; spool drained after the last round: %s' % (
            ' '.join('%.0f' % r['rate'] for r in baselines), ' '.join('%.0f' % r['rate'] for r in results),
            'yes' if drained else 'no'))
        if measured['failures']:
            print('client errors: %s' % '; '.join(sorted(set(measured['failures']))[:3]))
            print(''.join(log[-10:]))
    finally:
        drop_database(url, name)
        shutil.rmtree(work, ignore_errors=True)
    return 0


def wait_for_empty_spool(database_url: str, seconds: float) -> bool:
    """Until postdesk has made tickets of everything it accepted (bounded by `seconds`)."""
    import psycopg
    deadline = time.monotonic() + seconds
    with psycopg.connect(database_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            if conn.execute("SELECT count(*) FROM raw_message WHERE state = 'pending'").fetchone()[0] == 0:
                return True
            time.sleep(0.2)
    return False


def report(baseline: dict, measured: dict, distinct: int, connections: int) -> None:
    print('%d connections, %d distinct ~4 KB messages; best round of each' % (connections, distinct))
    for label, result in (('null handler (250, stores nothing)', baseline), ('postdesk serve', measured)):
        print('%-36s %6d accepted in %5.1f s = %7.0f msg/s   DATA->250 p50 %6.2f ms  p99 %6.2f ms%s'
              % (label, result['accepted'], result['seconds'], result['rate'], result['p50'], result['p99'],
                 '  (%d client errors)' % len(result['failures']) if result['failures'] else ''))
    print('ratio postdesk / null handler: %.2f   (target >= 0.60)' % (measured['rate'] / baseline['rate']))


if __name__ == '__main__':
    sys.exit(main())
