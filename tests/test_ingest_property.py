"""Property tests: whatever bytes arrive, parse_message returns a ParsedMail or raises NotAMessage, in bounded
time, and its JSON holds only text PostgreSQL and every JSON consumer accept (no NUL, no lone surrogate).

Runs are derandomized so that CI is repeatable; set POSTDESK_FUZZ_RANDOM=1 (and POSTDESK_FUZZ_EXAMPLES=N) to
explore new inputs on every run.
"""
from __future__ import annotations

import base64
import json
import os
import re
import struct
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, reject, settings
from hypothesis import strategies as st

from ingest import NotAMessage, ParsedMail, parse_message

TIME_BOUND = 2.0       # seconds per parse_message call
EXAMPLES = int(os.environ.get('POSTDESK_FUZZ_EXAMPLES', '1000'))

FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                derandomize=os.environ.get('POSTDESK_FUZZ_RANDOM') != '1',
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

_NOT_TEXT = re.compile('[\x00\ud800-\udfff]')

# ------------------------------------------------------------------------------------------ seed messages

MIXED = b'''From: "=?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?=" <j@example.de>
To: Doe, John <j@example.org>, b@example.org
Cc: =?UTF-8?Q?M=C3=BCller=2C_Anna?= <anna@example.de>
Subject: =?UTF-8?B?R3LDvMOfZQ==?= =?ISO-8859-1?Q?_Caf=E9?= and more
Date: Tue, 3 Jun 2025 10:04:05 +0200
Message-ID: <m1@example.org>
In-Reply-To: <m0@example.org>
References: <a@example.org>
 <m0@example.org>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="B1"

--B1
Content-Type: multipart/alternative; boundary="B2"

--B2
Content-Type: text/plain; charset=utf-8; format=flowed
Content-Transfer-Encoding: quoted-printable

Hello =C3=BC world, this is=20
a flowed paragraph.
> quoted
--B2
Content-Type: text/html; charset=gb2312

<p onclick="x()">Hi <b>there</b> <img src="https://t.example/p.gif"><script>bad()</script></p>
--B2--
--B1
Content-Type: application/pdf; name="=?UTF-8?Q?R=C3=A9sum=C3=A9.pdf?="
Content-Disposition: attachment; filename*0*=UTF-8''R%C3%A9; filename*1*=sum%C3%A9.pdf
Content-Transfer-Encoding: base64

JVBERi0xLjQKJcfsj6IK
--B1
Content-Type: message/rfc822

From: b@example.net
Subject: inner message
Message-ID: <inner@example.net>

inner body
--B1
Content-Type: application/ms-tnef; name="winmail.dat"
Content-Transfer-Encoding: base64

eJ8+IgEAAQaQCAAEAAAAAAABAAEAAgKQBgAOAAAAAQAAAP////8AAAAAAAD9AwIQgAEACgAAAGhl
--B1--
'''

RELATED = ('From: Sender <sender@example.org>\r\n'
           'To: help@example.org\r\n'
           'Subject: =?ISO-2022-JP?B?' + base64.b64encode('お知らせ'.encode('iso2022_jp')).decode() + '?=\r\n'
           'Content-Type: multipart/related; boundary="R"\r\n'
           '\r\n'
           '--R\r\n'
           'Content-Type: text/html; charset=utf-8\r\n'
           '\r\n'
           '<html><body><p>Logo <img src="cid:logo@example.org"></p><table><tr><td>a</td></tr></table></body></html>\r\n'
           '--R\r\n'
           'Content-Type: image/png\r\n'
           'Content-ID: <logo@example.org>\r\n'
           'Content-Transfer-Encoding: base64\r\n'
           '\r\n'
           'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==\r\n'
           '--R--\r\n').encode('ascii')

REPORT = b'''From: MAILER-DAEMON@mx.example.org (Mail Delivery System)
To: help@example.org
Subject: Undelivered Mail Returned to Sender
Auto-Submitted: auto-replied
Content-Type: multipart/report; report-type=delivery-status; boundary="RPT"

--RPT
Content-Type: text/plain; charset=koi8-r

\xf0\xd2\xc9\xd7\xc5\xd4: <nobody@example.net> 550 5.1.1 User unknown
--RPT
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org

Final-Recipient: rfc822; nobody@example.net
Action: failed
Status: 5.1.1
--RPT
Content-Type: text/rfc822-headers

Message-ID: <orig@example.org>
Subject: Re: ticket
--RPT--
'''

SEEDS = (MIXED, RELATED, REPORT)

# ------------------------------------------------------------------------------------------ mutations

_INTERESTING = (b'\x00', b'\x1b$B', b'\x1b(B', b'\x80', b'\xff', b'\xc3', b'\xed\xa0\x80', b'\r', b'\n', b'\n ',
                b'=?', b'?=', b'?Q?', b'?B?', b'"', b'\\', b'<', b'>', b'(', b')', b';', b':', b',', b'*', b"'",
                b'%', b'--B1', b'--B2', b'--RPT', b'\n--B1--\n', b'\n\n', b'Content-Type: multipart/mixed; boundary=B1\n')


@st.composite
def mutated_messages(draw) -> bytes:
    """A seed message with a few random edits: bytes flipped, inserted, deleted, the message cut, lines
    duplicated, chunks copied elsewhere."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        op = draw(st.sampled_from(('flip', 'insert', 'delete', 'cut', 'duplicate_line', 'copy')))
        pos = draw(st.integers(0, len(data) - 1))
        if op == 'flip':
            data[pos] ^= draw(st.integers(1, 255))
        elif op == 'insert':
            data[pos:pos] = draw(st.sampled_from(_INTERESTING) | st.binary(min_size=1, max_size=8))
        elif op == 'delete':
            del data[pos:pos + draw(st.integers(1, 30))]
        elif op == 'cut':
            del data[pos:]
        elif op == 'duplicate_line':
            lines = bytes(data).split(b'\n')
            i = pos % len(lines)
            lines[i:i] = [lines[i]] * draw(st.integers(1, 3))
            data = bytearray(b'\n'.join(lines))
        else:
            start = draw(st.integers(0, len(data) - 1))
            data[pos:pos] = data[start:start + draw(st.integers(1, 80))]
    return bytes(data)


DATA = Path(__file__).resolve().parent / 'data'
MSG_SEEDS = tuple((DATA / name).read_bytes() for name in ('outlook-mapi-only.msg', 'outlook-transport-headers.msg'))
_MSG_VALUES = (b'\xff\xff\xff\xff', b'\xfe\xff\xff\xff', b'\xfd\xff\xff\xff', b'\x00\x00\x00\x00',
               b'\x01\x00\x00\x00', struct.pack('<I', 0x7FFFFFFF), struct.pack('<I', 4096), b'\x05\x00\x00\x00')


@st.composite
def mutated_msg_files(draw) -> bytes:
    """An Outlook .msg fixture with a few edits where they hurt most: sector numbers, sizes and directory
    entries overwritten with special values (free, end of chain, huge), bytes flipped, the file cut."""
    data = bytearray(draw(st.sampled_from(MSG_SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(('word', 'word', 'flip', 'cut', 'insert')))
        if op == 'word':
            pos = draw(st.integers(0, max(len(data) - 4, 0) // 4)) * 4
            data[pos:pos + 4] = draw(st.sampled_from(_MSG_VALUES))
        elif op == 'flip' and data:
            data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
        elif op == 'cut':
            del data[draw(st.integers(8, len(data))):]
        else:
            pos = draw(st.integers(0, len(data)))
            data[pos:pos] = draw(st.binary(min_size=1, max_size=64))
    return bytes(data)


# ------------------------------------------------------------------------------------------ checks

def _strings(value, path='$'):
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield path + '.' + key, key
            yield from _strings(item, path + '.' + key)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, '%s[%d]' % (path, i))


def parse_within_bound(raw: bytes) -> ParsedMail | None:
    """parse_message(raw), or None when it raises NotAMessage; any other exception propagates. Fails when the
    call takes longer than TIME_BOUND."""
    start = time.monotonic()
    try:
        mail = parse_message(raw)
    except NotAMessage as refused:
        assert str(refused), 'NotAMessage without a reason'
        mail = None
    elapsed = time.monotonic() - start
    assert elapsed < TIME_BOUND, 'parse_message took %.2f s for %d bytes' % (elapsed, len(raw))
    return mail


def assert_clean_json(mail: ParsedMail) -> None:
    data = mail.to_json('x')
    assert list(data) == ['file', 'message_id', 'subject', 'from', 'to', 'cc', 'reply_to', 'date', 'in_reply_to',
                          'references', 'text', 'html', 'attachments', 'auto_submitted', 'bounce', 'defects', 'error']
    for path, text in _strings(data):
        bad = _NOT_TEXT.search(text)
        assert not bad, 'U+%04X at %s: %r' % (ord(bad.group()), path, text[:200])
    json.dumps(data, ensure_ascii=False).encode('utf-8')


# ------------------------------------------------------------------------------------------ properties

def test_seed_messages_parse():
    for seed in SEEDS:
        mail = parse_within_bound(seed)
        assert mail is not None and mail.subject
        assert_clean_json(mail)


@FUZZ
@given(st.binary(max_size=4000))
def test_arbitrary_bytes_give_a_clean_parsed_mail_or_not_a_message(raw):
    mail = parse_within_bound(raw)
    if mail is not None:
        assert_clean_json(mail)


@FUZZ
@given(st.binary(max_size=4000))
def test_arbitrary_bytes_after_a_header_give_a_clean_parsed_mail(body):
    mail = parse_within_bound(b'From: a@example.org\nSubject: fuzz\n' + body)
    assert mail is not None
    assert_clean_json(mail)


@FUZZ
@example(MIXED.replace(b'3 Jun 2025', b'3 Jqn 2025'))
@given(mutated_messages())
def test_mutated_messages_parse_or_raise_not_a_message_within_the_time_bound(raw):
    parse_within_bound(raw)


@FUZZ
@example(MIXED.replace(b'3 Jun 2025', b'3 Jqn 2025'))
@given(mutated_messages())
def test_mutated_messages_parse_or_raise_not_a_message_within_the_time_bound(raw):
    parse_within_bound(raw)


@FUZZ
@given(mutated_messages())
def test_mutated_messages_give_json_without_lone_surrogates(raw):
    try:
        mail = parse_within_bound(raw)
    except AssertionError:
        raise
    except Exception:
        reject()           # a crash is the previous property's finding; here only the output of a parse counts
    if mail is None:
        return
    data = mail.to_json('x')
    for path, text in _strings(data):
        assert not re.search('[\ud800-\udfff]', text), 'lone surrogate at %s: %r' % (path, text[:200])
    json.dumps(data, ensure_ascii=False).encode('utf-8')


@FUZZ
@example(MIXED.replace(b'Content-Type: application/pdf', b'Content-Type: application/p\x00df'))
@example(REPORT.replace(b'Action: failed', b'Action: failed\x00'))
@example(REPORT.replace(b'Auto-Submitted: auto', b'Auto-Submitted:\x00 auto'))
@given(mutated_messages())
def test_mutated_messages_give_json_without_nul_or_surrogates(raw):
    try:
        mail = parse_within_bound(raw)
    except AssertionError:
        raise
    except Exception:
        reject()
    if mail is not None:
        assert_clean_json(mail)


def test_msg_seeds_parse():
    for seed in MSG_SEEDS:
        mail = parse_within_bound(seed)
        assert mail is not None and mail.subject
        assert_clean_json(mail)


@FUZZ
@given(mutated_msg_files())
def test_mutated_msg_files_give_a_clean_parsed_mail_or_not_a_message_within_the_time_bound(raw):
    mail = parse_within_bound(raw)
    if mail is not None:
        assert_clean_json(mail)
