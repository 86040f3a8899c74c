"""Outlook .msg files as an agent sees them: the same ParsedMail as the mail they hold, with headers from the
transport headers or the MAPI properties, bodies, attachments and embedded messages; broken ones refused."""
from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import pytest

from ingest import Address, NotAMessage, parse_message

DATA = Path(__file__).resolve().parent / 'data'
CORPUS_MSG = Path(__file__).resolve().parents[2] / 'shared' / 'corpus' / 'mail-parser' / 'mail_outlook_1'


def load_builder():
    """tests/data/build_msg.py, the writer of the fixtures, as a module."""
    spec = importlib.util.spec_from_file_location('build_msg', DATA / 'build_msg.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_fixtures_are_what_the_builder_writes():
    builder = load_builder()
    assert (DATA / 'outlook-mapi-only.msg').read_bytes() == builder.compound_file(builder.mapi_only_message())


@pytest.fixture(scope='module')
def mapi_only():
    return parse_message((DATA / 'outlook-mapi-only.msg').read_bytes())


def test_headers_come_from_mapi_properties_without_transport_headers(mapi_only):
    assert mapi_only.subject == 'Wo bleibt meine Bestellung?'
    assert mapi_only.from_ == Address('Jürgen Müller', 'juergen@customer.example')     # SMTP, not the X.500 DN
    assert mapi_only.to == (Address('Support', 'support@helpdesk.example'),)
    assert mapi_only.cc == (Address('Anna Schmidt', 'anna@customer.example'),)
    assert mapi_only.message_id == 'q-4711@customer.example'
    assert mapi_only.in_reply_to == ('a-1@helpdesk.example',)
    assert mapi_only.date.isoformat() == '2025-06-03T10:04:00+00:00'


def test_plain_and_html_bodies_are_read_and_the_html_sanitised(mapi_only):
    assert mapi_only.text == 'Grüße, my order 4711 has not arrived.\n'
    assert '<p>Grüße, my order <b>4711</b> has not arrived.</p>' in mapi_only.html    # code page 1252
    assert '<script' not in mapi_only.html and 'color:red' not in mapi_only.html


def test_attachments_keep_names_types_bytes_and_content_ids(mapi_only):
    pdf, image, embedded = mapi_only.attachments
    assert (pdf.filename, pdf.content_type, pdf.data, pdf.inline) == (
        'Rechnung März.pdf', 'application/pdf', b'%PDF-1.4\n%test\n', False)
    assert (image.filename, image.content_type, image.content_id, image.inline) == (
        'image001.png', 'image/png', 'image001.png@01D9A1B2.C3D4E5F0', True)
    assert image.data.startswith(b'\x89PNG')
    assert (embedded.filename, embedded.content_type) == ('Original order confirmation.eml', 'message/rfc822')


def test_embedded_message_is_an_attached_message_with_its_own_parts(mapi_only):
    inner = parse_message(mapi_only.attachments[2].data)
    assert inner.subject == 'Original order confirmation'
    assert inner.from_ == Address('Shop', 'orders@shop.example')
    assert inner.to == (Address('Jürgen Müller', 'juergen@customer.example'),)
    assert inner.text == 'Order 4711 confirmed.\n'
    assert [(a.filename, a.data) for a in inner.attachments] == [('receipt.txt', b'Receipt 4711\r\n')]
    assert 'Order 4711 confirmed' not in parse_message((DATA / 'outlook-mapi-only.msg').read_bytes()).text


def test_transport_headers_win_over_mapi_properties():
    mail = parse_message((DATA / 'outlook-transport-headers.msg').read_bytes())
    assert mail.subject == 'Question about invoice 17'
    assert mail.from_ == Address('Ann Köhler', 'ann@customer.example')
    assert mail.to == (Address('Support', 'support@helpdesk.example'),)
    assert mail.date.isoformat() == '2025-06-03T10:04:05+02:00'
    assert mail.text == 'Hello, 日本 and Köln: where is invoice 17?\n'    # the old multipart boundary is gone
    assert mail.header('X-Mailer') == 'Microsoft Outlook 16.0'


def test_raw_msg_size_is_the_size_of_the_file():
    raw = (DATA / 'outlook-transport-headers.msg').read_bytes()
    assert parse_message(raw).size == len(raw)


@pytest.mark.skipif(not CORPUS_MSG.is_file(), reason='the shared corpus is not there')
def test_a_real_outlook_newsletter_is_read():
    mail = parse_message(CORPUS_MSG.read_bytes())
    assert mail.subject == 'Newsletter Prüfung Personalwesen / Prüfung Eröffnungsbilanz'
    assert mail.from_.email == 'NueblingV@w-vwa.de'
    assert 'Sehr geehrte Frau Gaiser-Schönenborn' in mail.text
    assert 'newsletter.png' in [a.filename for a in mail.attachments]
    assert mail.html and 'Sehr geehrte' in mail.html


@pytest.mark.parametrize('cut', [8, 100, 512, 1000, 3000, 6000, 12000])
def test_truncated_msg_is_not_a_message_with_a_reason(cut):
    raw = (DATA / 'outlook-mapi-only.msg').read_bytes()[:cut]
    with pytest.raises(NotAMessage, match='Outlook'):
        parse_message(raw)


def test_compound_file_without_mapi_properties_is_not_a_message():
    raw = load_builder().compound_file({'WordDocument': b'not a message' * 10})
    with pytest.raises(NotAMessage, match='not an Outlook message'):
        parse_message(raw)


def test_ole_magic_followed_by_zeros_is_not_a_message():
    with pytest.raises(NotAMessage, match='Outlook'):
        parse_message(b'\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1' + b'\x00' * 1016)


def test_same_msg_gives_the_same_attachments_every_time():
    raw = (DATA / 'outlook-mapi-only.msg').read_bytes()
    first = [(a.filename, a.sha256) for a in parse_message(raw).attachments]
    assert first == [(a.filename, a.sha256) for a in parse_message(raw).attachments]
    assert first[0][1] == hashlib.sha256(b'%PDF-1.4\n%test\n').hexdigest()
