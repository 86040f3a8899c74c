"""`postdesk parse [--json] FILE...` as a user runs it: the console script in a subprocess, on files on disk."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CONTRACT_KEYS = ['file', 'message_id', 'subject', 'from', 'to', 'cc', 'reply_to', 'date', 'in_reply_to',
                 'references', 'text', 'html', 'attachments', 'auto_submitted', 'bounce', 'defects', 'error']
ATTACHMENT_KEYS = {'filename', 'content_type', 'size', 'content_id', 'inline', 'sha256'}
OLE2_MAGIC = b'\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1'

FIRST = '''From: =?UTF-8?Q?J=C3=BCrgen?= <j@example.de>
To: help@example.org
Subject: =?UTF-8?Q?Frage_zur_Rechnung_M=C3=A4rz?=
Date: Tue, 3 Jun 2025 10:04:05 +0200
Message-ID: <first@example.de>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="B"

--B
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

Grüße, wo ist meine Rechnung?
--B
Content-Type: application/pdf; name="rechnung.pdf"
Content-Disposition: attachment; filename="rechnung.pdf"
Content-Transfer-Encoding: base64

JVBERi0xLjQK
--B--
'''.encode()

SECOND = b'''From: Ann <ann@example.com>
To: help@example.org
Subject: Second message
Message-ID: <second@example.com>
In-Reply-To: <first@example.de>
References: <first@example.de>

Thanks!
'''


def postdesk() -> str:
    found = shutil.which('postdesk', path=os.path.dirname(sys.executable)) or shutil.which('postdesk')
    if not found:
        pytest.skip('the postdesk console script is not installed (pip install -e .)')
    return found


def run_parse(*args: str, cwd: Path, timeout: float = 60, **env_vars: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONIOENCODING'}
    env.update(env_vars)
    return subprocess.run([postdesk(), 'parse', *args], capture_output=True, cwd=cwd, env=env, timeout=timeout)


def json_lines(done: subprocess.CompletedProcess) -> list[dict]:
    lines = done.stdout.decode('utf-8').splitlines()
    return [json.loads(line) for line in lines]


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / 'first.eml').write_bytes(FIRST)
    (tmp_path / 'sub').mkdir()
    (tmp_path / 'sub' / 'second.eml').write_bytes(SECOND)
    (tmp_path / 'empty.eml').write_bytes(b'')
    (tmp_path / 'outlook.msg').write_bytes(OLE2_MAGIC + b'\x00' * 1016)
    return tmp_path


def test_json_prints_one_line_per_file_with_exactly_the_contract_keys(files):
    done = run_parse('--json', 'first.eml', 'sub/second.eml', cwd=files)
    assert done.returncode == 0, done.stderr
    objects = json_lines(done)
    assert len(objects) == 2
    for obj in objects:
        assert list(obj) == CONTRACT_KEYS
        assert obj['error'] is None
        for attachment in obj['attachments']:
            assert set(attachment) == ATTACHMENT_KEYS


def test_json_lines_are_in_input_order_with_the_file_as_given(files):
    absolute = str(files / 'first.eml')
    done = run_parse('--json', 'sub/second.eml', absolute, './sub/../first.eml', cwd=files)
    assert [obj['file'] for obj in json_lines(done)] == ['sub/second.eml', absolute, './sub/../first.eml']


def test_json_values_are_what_the_user_sees(files):
    first, second = json_lines(run_parse('--json', 'first.eml', 'sub/second.eml', cwd=files))
    assert first['subject'] == 'Frage zur Rechnung März'
    assert first['from'] == {'name': 'Jürgen', 'email': 'j@example.de'}
    assert first['to'] == [{'name': '', 'email': 'help@example.org'}]
    assert first['date'] == '2025-06-03T10:04:05+02:00'
    assert first['message_id'] == 'first@example.de'
    assert first['text'].strip() == 'Grüße, wo ist meine Rechnung?'
    assert [(a['filename'], a['content_type'], a['size']) for a in first['attachments']] == [
        ('rechnung.pdf', 'application/pdf', 9)]
    assert second['in_reply_to'] == ['first@example.de']
    assert second['references'] == ['first@example.de']


def test_output_is_utf8_json_without_ascii_escapes_even_in_the_c_locale(files):
    done = run_parse('--json', 'first.eml', cwd=files, LC_ALL='C', LANG='C')
    assert done.returncode == 0, done.stderr
    assert 'März'.encode() in done.stdout


def test_non_messages_between_good_files_get_an_error_and_exit_status_1(files):
    done = run_parse('--json', 'first.eml', 'empty.eml', 'outlook.msg', 'sub/second.eml', cwd=files)
    assert done.returncode == 1
    objects = json_lines(done)
    assert [obj['file'] for obj in objects] == ['first.eml', 'empty.eml', 'outlook.msg', 'sub/second.eml']
    for obj in objects:
        assert list(obj) == CONTRACT_KEYS
    good1, empty, outlook, good2 = objects
    assert good1['error'] is None and good1['subject'] == 'Frage zur Rechnung März'
    assert good2['error'] is None and good2['subject'] == 'Second message'
    assert 'empty' in empty['error']
    assert 'Outlook' in outlook['error']       # a compound-file header and nothing else: unreadable
    for bad in (empty, outlook):
        assert bad['subject'] is None and bad['attachments'] == [] and bad['bounce'] is None


def test_all_good_files_exit_0(files):
    assert run_parse('--json', 'first.eml', 'sub/second.eml', cwd=files).returncode == 0
    assert run_parse('first.eml', cwd=files).returncode == 0


def test_missing_file_gets_an_error_line_and_exit_status_1(files):
    done = run_parse('--json', 'first.eml', 'does-not-exist.eml', 'sub/second.eml', cwd=files)
    assert done.returncode == 1
    objects = json_lines(done)
    assert [obj['file'] for obj in objects] == ['first.eml', 'does-not-exist.eml', 'sub/second.eml']
    assert objects[1]['error']
    assert list(objects[1]) == CONTRACT_KEYS
    assert objects[0]['error'] is None and objects[2]['error'] is None


def test_summary_without_json_shows_the_subject_and_sender(files):
    done = run_parse('first.eml', 'sub/second.eml', cwd=files)
    assert done.returncode == 0
    out = done.stdout.decode('utf-8')
    assert 'Frage zur Rechnung März' in out
    assert 'Second message' in out
    assert 'j@example.de' in out
    assert 'rechnung.pdf' in out
    with pytest.raises(json.JSONDecodeError):
        json.loads(out.splitlines()[0])


def test_summary_without_json_reports_a_non_message_and_continues(files):
    done = run_parse('outlook.msg', 'first.eml', cwd=files)
    assert done.returncode == 1
    out = done.stdout.decode('utf-8')
    assert 'outlook.msg' in out and 'Outlook' in out
    assert 'Frage zur Rechnung März' in out


# ------------------------------------------------------------------------------------------ the shared corpus

CORPUS = Path(__file__).resolve().parents[2] / 'shared' / 'corpus'
NOT_CORPUS_MESSAGES = {'expected.jsonl', 'PROVENANCE.md', 'README.md', 'score.py'}
# The corpus files that are not RFC 822 messages, with a word their error reason must contain.
EXPECTED_ERRORS = {
    'cpython/msg_19.txt': 'no RFC 822 header',        # a digest fragment: no header fields at all
}
# mail-parser/mail_outlook_1 is an Outlook .msg file: it is read as the message it holds.


def test_corpus_files_that_are_not_messages():
    if not CORPUS.is_dir():
        pytest.skip('the shared corpus is not at %s' % CORPUS)
    paths = sorted(p.relative_to(CORPUS).as_posix() for p in CORPUS.rglob('*')
                   if p.is_file() and p.name not in NOT_CORPUS_MESSAGES and 'LICENSES' not in p.relative_to(CORPUS).parts)
    assert set(EXPECTED_ERRORS) <= set(paths)
    done = run_parse('--json', *paths, cwd=CORPUS, timeout=120)
    objects = json_lines(done)
    assert [obj['file'] for obj in objects] == paths
    for obj in objects:
        assert list(obj) == CONTRACT_KEYS
    errors = {obj['file']: obj['error'] for obj in objects if obj['error'] is not None}
    assert set(errors) == set(EXPECTED_ERRORS), errors
    for path, word in EXPECTED_ERRORS.items():
        assert word in errors[path], (path, errors[path])
    assert done.returncode == 1


def test_outlook_msg_file_is_parsed_like_the_mail_it_holds(tmp_path):
    fixture = Path(__file__).resolve().parent / 'data' / 'outlook-transport-headers.msg'
    (tmp_path / 'exported.msg').write_bytes(fixture.read_bytes())
    done = run_parse('--json', 'exported.msg', cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    [obj] = json_lines(done)
    assert obj['error'] is None
    assert obj['subject'] == 'Question about invoice 17'
    assert obj['from'] == {'name': 'Ann Köhler', 'email': 'ann@customer.example'}
