"""Hostile and oversized input: bounded time, a defect instead of a crash, and a clear refusal for input that is
not a message at all."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from ingest import NotAMessage, ParseLimits, parse_message

ROOT = Path(__file__).resolve().parents[1]


def nested_multiparts(depth: int, leaf: bytes = b'Content-Type: text/plain\n\ndeep text\n') -> bytes:
    head = b''.join(b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (i, i) for i in range(depth))
    tail = b''.join(b'\n--b%d--\n' % i for i in reversed(range(depth)))
    return b'From: a@example.org\nSubject: nested\n' + head + leaf + tail


def parse_in_child(raw: bytes, timeout: float) -> float:
    """Parse `raw` in a fresh interpreter; the seconds it took, or pytest.fail when it is killed at `timeout`.

    A parser that loops or takes quadratic time must not hang the test run, so the work is done in a process
    that can be killed."""
    code = ('import sys, time\nfrom ingest import parse_message\nraw = sys.stdin.buffer.read()\n'
            'start = time.monotonic()\nparse_message(raw)\nprint(time.monotonic() - start)\n')
    try:
        done = subprocess.run([sys.executable, '-c', code], input=raw, capture_output=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        pytest.fail('parse_message did not finish within %.0f s' % timeout)
    assert done.returncode == 0, done.stderr.decode('utf-8', 'replace')[-2000:]
    return float(done.stdout)


# ------------------------------------------------------------------------------------------ size limits

def test_message_larger_than_the_limit_is_parsed_without_crash_and_records_a_defect():
    raw = b'From: a@example.org\nSubject: big one\n\n' + b'x' * 5000 + b'\nTHE END\n'
    mail = parse_message(raw, ParseLimits(max_message_bytes=1000))
    assert mail.subject == 'big one'
    assert mail.size == len(raw)
    assert 'THE END' not in mail.text
    assert any('limit' in d for d in mail.defects)


def test_message_within_the_limit_records_no_size_defect():
    mail = parse_message(b'From: a@example.org\nSubject: small\n\nhi\n', ParseLimits(max_message_bytes=1000))
    assert mail.defects == ()


def test_multipart_message_cut_at_the_size_limit_keeps_what_came_before():
    raw = (b'From: a@example.org\nSubject: cut\nContent-Type: multipart/mixed; boundary=B\n\n'
           b'--B\nContent-Type: text/plain\n\nThe question.\n--B\nContent-Type: application/octet-stream; name=big.bin\n'
           b'Content-Transfer-Encoding: base64\n\n' + b'QUJD' * 5000 + b'\n--B--\n')
    mail = parse_message(raw, ParseLimits(max_message_bytes=2000))
    assert 'The question.' in mail.text
    assert any('limit' in d for d in mail.defects)


def test_mime_nesting_deeper_than_max_depth_records_a_defect_and_returns_quickly():
    start = time.monotonic()
    mail = parse_message(nested_multiparts(200))
    assert time.monotonic() - start < 2
    assert mail.subject == 'nested'
    assert any('nesting' in d for d in mail.defects)


def test_mime_nesting_within_max_depth_is_read_to_the_leaf():
    mail = parse_message(nested_multiparts(30))
    assert mail.text.strip() == 'deep text'
    assert not any('nesting' in d for d in mail.defects)


def test_mime_nesting_deeper_than_python_recursion_does_not_crash():
    start = time.monotonic()
    mail = parse_message(nested_multiparts(5000))
    assert time.monotonic() - start < 10
    assert mail.subject == 'nested'
    assert mail.defects


def test_mime_nesting_deeper_than_python_recursion_does_not_show_raw_mime_as_text():
    mail = parse_message(nested_multiparts(5000))
    assert 'Content-Type:' not in mail.text


def test_more_parts_than_max_parts_records_a_defect():
    parts = b''.join(b'--B\nContent-Type: application/octet-stream\n\n%d\n' % i for i in range(500))
    raw = b'From: a@example.org\nSubject: many\nContent-Type: multipart/mixed; boundary=B\n\n' + parts + b'--B--\n'
    mail = parse_message(raw, ParseLimits(max_parts=50))
    assert len(mail.attachments) < 50
    assert any('parts' in d for d in mail.defects)


def test_huge_html_is_cut_with_a_defect():
    html = b'<p>' + b'word ' * 50000 + b'</p>'
    raw = b'From: a@example.org\nSubject: huge\nContent-Type: text/html\n\n' + html
    mail = parse_message(raw, ParseLimits(max_html_bytes=10000))
    assert mail.html is not None and len(mail.html) <= 10100
    assert mail.text.startswith('word word')
    assert any('HTML' in d for d in mail.defects)


def test_deeply_nested_comment_in_address_does_not_crash():
    # Comments may nest (RFC 5322 3.2.2); the standard library's address parser recurses once per level.
    comment = b'(' * 600 + b'comment' + b')' * 600
    mail = parse_message(b'From: a@example.org ' + comment + b'\nTo: b@example.org ' + comment + b'\nSubject: s\n\nx\n')
    assert mail.subject == 's'
    assert mail.from_.email == 'a@example.org'


def test_unbalanced_nested_comments_in_address_do_not_crash():
    mail = parse_message(b'From: ' + b'(' * 600 + b'\nSubject: s\n\nx\n')
    assert mail.subject == 's'


def test_deeply_nested_html_is_parsed_in_bounded_time():
    raw = b'From: a@example.org\nSubject: divs\nContent-Type: text/html\n\n' + b'<div>' * 200000
    assert parse_in_child(raw, timeout=6) < 5


def test_many_header_lines_without_field_names_are_parsed_in_bounded_time():
    raw = b'From: a@example.org\n' + b'junk line\n' * 20000 + b'Subject: s\n\nbody\n'
    assert parse_in_child(raw, timeout=6) < 5


def test_long_format_flowed_paragraph_is_parsed_in_bounded_time():
    raw = b'From: a@example.org\nSubject: flowed\nContent-Type: text/plain; format=flowed\n\n' + b'w \n' * 1000000
    assert parse_in_child(raw, timeout=6) < 5


# ------------------------------------------------------------------------------------------ not a message

@pytest.mark.parametrize('raw, reason_word', [
    (b'', 'empty'),
    (b'   \n\t\r\n  \n', 'empty'),
    (b'\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1' + b'\x00' * 504, 'Outlook'),
    (b'%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n', 'PDF'),
    (b'Hello,\n\nthis is just a paragraph of text without any header.\nRegards\n', 'no RFC 822 header'),
    (b'\x00\x01\x02\x03' * 100, 'NUL'),
])
def test_input_that_is_not_a_message_raises_not_a_message_with_a_reason(raw, reason_word):
    with pytest.raises(NotAMessage) as raised:
        parse_message(raw)
    assert reason_word in str(raised.value)


def test_not_a_message_is_a_value_error():
    assert issubclass(NotAMessage, ValueError)


def test_mbox_from_line_before_the_header_is_accepted():
    mail = parse_message(b'From someone@example.org Tue Jun  3 10:04:05 2025\nFrom: a@example.org\nSubject: mbox\n\nx\n')
    assert mail.subject == 'mbox'


def test_blank_lines_before_the_header_are_accepted():
    mail = parse_message(b'\n\r\n  \nFrom: a@example.org\nSubject: saved\n\nx\n')
    assert mail.subject == 'saved'
    assert mail.from_.email == 'a@example.org'
