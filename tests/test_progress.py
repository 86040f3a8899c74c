"""Progress of `replay` (and `quarantine retry`, `deliver --once`) on a terminal: the total (files counted
first; an mbox by bytes), the rate and the time left, drawn by tqdm on standard error under a pseudo-terminal;
nothing when standard error is a file, nor with --quiet."""
from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import termios
import time

from conftest import postdesk_executable
from mails import MAILBOX, make_message
from test_delivery import relays  # noqa: F401 (fixture)
from test_replay_cli import add_mailbox, write


def run_on_a_terminal(db_url: str, cwd, *args: str, timeout: float = 120,
                      extra_env: dict | None = None) -> tuple[int, str]:
    """Run postdesk with standard error on a pseudo-terminal of 120 columns; its exit status and what the
    terminal showed."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack('HHHH', 40, 120, 0, 0))
    env = dict(os.environ, DATABASE_URL=db_url, **(extra_env or {}))
    env.pop('POSTDESK_CONFIG', None)
    process = subprocess.Popen([postdesk_executable(), *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=slave, env=env, cwd=cwd)
    os.close(slave)
    shown = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:              # the other side closed: the process has ended
                    break
                if not chunk:
                    break
                shown += chunk
            elif process.poll() is not None:
                break
        return process.wait(timeout=30), shown.decode('utf-8', 'replace')
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)


def many_messages(folder, count: int) -> None:
    for n in range(count):
        write(folder / ('%04d.eml' % n), make_message(message_id='<p-%d@c.example>' % n, subject='p %d' % n))


def test_replay_on_a_terminal_shows_the_total_the_rate_and_the_time_left(db_url, run_postdesk, tmp_path):
    add_mailbox(run_postdesk, MAILBOX, '--default')
    many_messages(tmp_path / 'in', 300)
    status, shown = run_on_a_terminal(db_url, tmp_path, 'replay', str(tmp_path / 'in'))
    assert status == 0, shown
    assert '300/300' in shown, 'the total, from the files counted first'
    assert 'msg/s' in shown and '<' in shown, 'the rate and the time left'
    assert 'new 300' in shown


def test_an_mbox_on_a_terminal_moves_by_bytes(db_url, run_postdesk, tmp_path):
    add_mailbox(run_postdesk, MAILBOX, '--default')
    mbox = b''.join(b'From anna@customer.example Mon Nov 16 09:00:00 2026\n'
                    + make_message(message_id='<b-%d@c.example>' % n, subject='b %d' % n).replace(b'\r\n', b'\n')
                    + b'\n' for n in range(200))
    write(tmp_path / 'box.mbox', mbox)
    status, shown = run_on_a_terminal(db_url, tmp_path, 'replay', str(tmp_path / 'box.mbox'))
    assert status == 0, shown
    total = '%.1fk' % (len(mbox) / 1000)
    assert '/%s' % total in shown and '%s/%s' % (total, total) in shown and 'B/s' in shown


def test_no_progress_to_a_file_nor_with_quiet(db_url, run_postdesk, tmp_path):
    add_mailbox(run_postdesk, MAILBOX, '--default')
    many_messages(tmp_path / 'in', 20)
    to_a_file = run_postdesk('replay', str(tmp_path / 'in'))
    assert to_a_file.returncode == 0
    assert 'msg/s' not in to_a_file.stderr and '\r' not in to_a_file.stderr
    assert 'replayed 20 messages' in to_a_file.stdout
    status, shown = run_on_a_terminal(db_url, tmp_path, 'replay', '--quiet', str(tmp_path / 'in'))
    assert status == 0 and 'msg/s' not in shown and '\r' not in shown


def test_quarantine_retry_on_a_terminal_shows_its_total(db_url, run_postdesk, tmp_path):
    for n in range(5):          # no mailbox yet: every message is held
        write(tmp_path / 'in' / ('%d.eml' % n), make_message(message_id='<h-%d@c.example>' % n))
    assert run_postdesk('replay', str(tmp_path / 'in')).returncode == 1
    add_mailbox(run_postdesk, MAILBOX, '--default')
    status, shown = run_on_a_terminal(db_url, tmp_path, 'quarantine', 'retry')
    assert status == 0, shown
    assert '5/5' in shown and 'msg/s' in shown


def test_deliver_once_on_a_terminal_shows_its_total(db_url, run_postdesk, tmp_path, relays):
    from test_delivery import Sink
    add_mailbox(run_postdesk, MAILBOX, '--default')
    many_messages(tmp_path / 'in', 3)
    assert run_postdesk('replay', str(tmp_path / 'in')).returncode == 0
    for ticket in (1, 2, 3):
        assert run_postdesk('reply', str(ticket), '--text', 'On its way.').returncode == 0
    relay = relays(Sink())
    status, shown = run_on_a_terminal(db_url, tmp_path, 'deliver', '--once',
                                      extra_env={'POSTDESK_SMTP_RELAY': relay.address})
    assert status == 0, shown
    assert '3/3' in shown and 'msg/s' in shown and 'sent 3' in shown
