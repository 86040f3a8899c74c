"""Which parts are the message's own text and HTML, and how their bytes become text a person can read."""
from __future__ import annotations

import re

import pytest

from ingest import parse_message


def message(*header_lines: bytes, body: bytes) -> bytes:
    return b'\n'.join((b'From: a@example.org', b'Subject: test') + header_lines) + b'\n\n' + body


def text_of(content_type: bytes | None, body: bytes, *more_headers: bytes) -> str:
    headers = ((b'Content-Type: ' + content_type,) if content_type else ()) + more_headers
    return parse_message(message(*headers, body=body)).text


# ------------------------------------------------------------------------------------------ structure

ALTERNATIVE = b'''From: a@example.org
Subject: alternative
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="alt"

--alt
Content-Type: text/plain; charset=utf-8

Plain version
--alt
Content-Type: text/html; charset=utf-8

<p>HTML version</p>
--alt--
'''


def test_multipart_alternative_gives_both_plain_text_and_html():
    mail = parse_message(ALTERNATIVE)
    assert mail.text.strip() == 'Plain version'
    assert mail.html == '<p>HTML version</p>'
    assert mail.attachments == ()


def test_text_parts_of_a_mixed_message_are_taken_in_mime_order():
    raw = b'''From: a@example.org
Subject: mixed
Content-Type: multipart/mixed; boundary="mix"

--mix
Content-Type: text/plain

first part
--mix
Content-Type: image/png; name="photo.png"
Content-Disposition: inline; filename="photo.png"
Content-Transfer-Encoding: base64

iVBORw0KGgo=
--mix
Content-Type: text/plain

second part
--mix--
'''
    mail = parse_message(raw)
    assert mail.text.index('first part') < mail.text.index('second part')
    assert [a.filename for a in mail.attachments] == ['photo.png']


FORWARD = b'''From: a@example.org
Subject: Fwd: Original question
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

--outer
Content-Type: text/plain; charset=utf-8

See the forwarded message below.
--outer
Content-Type: message/rfc822

From: customer@example.net
Subject: Original question
Message-ID: <orig@example.net>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="inner"

--inner
Content-Type: text/plain

Inner plain text
--inner
Content-Type: text/html

<p>Inner HTML text</p>
--inner--

--outer--
'''


def test_body_parts_of_an_attached_message_are_not_our_body():
    mail = parse_message(FORWARD)
    assert mail.text.strip() == 'See the forwarded message below.'
    assert 'Inner' not in mail.text
    assert mail.html is None


def test_attached_message_is_one_attachment_named_after_its_subject():
    mail = parse_message(FORWARD)
    assert [(a.filename, a.content_type) for a in mail.attachments] == [('Original question.eml', 'message/rfc822')]
    attached = parse_message(mail.attachments[0].data)
    assert attached.subject == 'Original question'
    assert attached.text.strip() == 'Inner plain text'


def test_inline_text_part_with_file_name_after_the_body_is_a_file_only():
    raw = b'''From: a@example.org
Subject: inline file
Content-Type: multipart/mixed; boundary="b1"

--b1
Content-Type: text/plain

Body text.
--b1
Content-Type: text/plain; name="notes.txt"
Content-Disposition: inline; filename="notes.txt"

Notes content.
--b1--
'''
    mail = parse_message(raw)
    assert mail.text.strip() == 'Body text.'
    assert [a.filename for a in mail.attachments] == ['notes.txt']
    assert mail.attachments[0].data.strip() == b'Notes content.'
    assert mail.attachments[0].inline is True


def test_inline_text_part_with_file_name_before_any_body_is_shown_and_listed_as_attachment():
    raw = b'''From: a@example.org
Subject: inline file
Content-Type: multipart/mixed; boundary="b1"

--b1
Content-Type: text/plain; name="message.txt"
Content-Disposition: inline; filename="message.txt"

The message itself.
--b1
Content-Type: application/pdf; name="a.pdf"

%PDF-1.4
--b1--
'''
    mail = parse_message(raw)
    assert mail.text.strip() == 'The message itself.'
    assert [a.filename for a in mail.attachments] == ['message.txt', 'a.pdf']


def test_text_part_marked_attachment_is_not_shown_in_the_body():
    raw = b'''From: a@example.org
Subject: log attached
Content-Type: multipart/mixed; boundary="b1"

--b1
Content-Type: text/plain

See the log.
--b1
Content-Type: text/plain
Content-Disposition: attachment; filename="server.log"

ERROR something broke
--b1--
'''
    mail = parse_message(raw)
    assert mail.text.strip() == 'See the log.'
    assert [a.filename for a in mail.attachments] == ['server.log']


def test_multipart_whose_boundary_parameter_does_not_match_is_recovered():
    raw = b'''From: a@example.org
Subject: wrong boundary
Content-Type: multipart/mixed; boundary="WRONG"

--real-boundary
Content-Type: text/plain

Hello from the body.
--real-boundary
Content-Type: application/pdf; name="invoice.pdf"
Content-Transfer-Encoding: base64

JVBERi0xLjQK
--real-boundary--
'''
    mail = parse_message(raw)
    assert mail.text.strip() == 'Hello from the body.'
    assert 'Content-Type:' not in mail.text
    assert [a.filename for a in mail.attachments] == ['invoice.pdf']
    assert mail.attachments[0].data == b'%PDF-1.4\n'
    assert any('boundary' in d for d in mail.defects)


def test_multipart_without_boundary_parameter_is_recovered():
    raw = b'''From: a@example.org
Subject: no boundary
Content-Type: multipart/mixed

--b
Content-Type: text/plain

Hello again.
--b--
'''
    mail = parse_message(raw)
    assert mail.text.strip() == 'Hello again.'
    assert 'Content-Type:' not in mail.text


def test_header_line_folded_without_leading_whitespace_does_not_end_the_header():
    raw = (b'Received: from x\n'
           b'by host with SMTP; Tue, 3 Jun 2025 10:04:05 +0200\n'
           b'Subject: hi\n'
           b'From: a@example.org\n'
           b'\n'
           b'Body here.\n')
    mail = parse_message(raw)
    assert mail.subject == 'hi'
    assert mail.from_.email == 'a@example.org'
    assert mail.text.strip() == 'Body here.'


def test_header_line_folded_without_leading_whitespace_in_crlf_message():
    raw = b'Received: from x\r\nby host with SMTP; Tue, 3 Jun 2025\r\nSubject: hi\r\nFrom: a@example.org\r\n\r\nBody.\r\n'
    mail = parse_message(raw)
    assert mail.subject == 'hi'
    assert mail.text.strip() == 'Body.'


def test_body_line_that_looks_like_a_header_stays_in_the_body():
    mail = parse_message(b'From: a@example.org\nSubject: s\n\nNote: this is body text.\nSecond line\n')
    assert mail.text == 'Note: this is body text.\nSecond line\n'


# ------------------------------------------------------------------------------------------ charsets

def test_gb2312_labelled_body_with_gbk_characters_is_decoded():
    assert text_of(b'text/plain; charset=gb2312', '朱镕基 王堃 你好'.encode('gbk')) == '朱镕基 王堃 你好'


def test_8bit_body_without_charset_in_utf8_is_decoded_as_utf8():
    assert text_of(None, 'Grüße aus Köln, 5 €'.encode()) == 'Grüße aus Köln, 5 €'
    assert text_of(b'text/plain', 'Grüße aus Köln, 5 €'.encode()) == 'Grüße aus Köln, 5 €'


def test_8bit_body_without_charset_in_latin1_is_decoded_as_windows_1252():
    assert text_of(None, 'Café Über – 5 €'.encode('cp1252')) == 'Café Über – 5 €'


def test_us_ascii_label_on_8bit_latin1_body_is_decoded_as_windows_1252():
    assert text_of(b'text/plain; charset=us-ascii', b'Caf\xe9 \x80') == 'Café €'


def test_iso_8859_8_i_label_decodes_hebrew():
    assert text_of(b'text/plain; charset=iso-8859-8-i', 'שלום עולם'.encode('iso8859_8')) == 'שלום עולם'


def test_iso_2022_jp_body_labelled_us_ascii_is_decoded():
    text = text_of(b'text/plain; charset=us-ascii', 'こんにちは世界\n'.encode('iso2022_jp'))
    assert text == 'こんにちは世界\n'
    assert '\x1b' not in text


def test_iso_2022_jp_body_without_label_is_decoded():
    for content_type in (None, b'text/plain'):
        text = text_of(content_type, 'お問い合わせありがとうございます。\n'.encode('iso2022_jp'))
        assert text == 'お問い合わせありがとうございます。\n'
        assert '\x1b' not in text


def test_iso_2022_jp_body_with_nec_special_characters_is_decoded():
    kana = 'お知らせ'.encode('iso2022_jp')[3:-3]
    body = b'\x1b$B' + kana + b'\x2d\x21\x1b(B\n'           # お知らせ①
    assert text_of(b'text/plain; charset=iso-2022-jp', body) == 'お知らせ①\n'


def test_utf7_body_is_decoded():
    assert text_of(b'text/plain; charset=utf-7', 'Grüße 日本 +1'.encode('utf-7')) == 'Grüße 日本 +1'


def test_nul_bytes_are_removed_from_text():
    assert text_of(b'text/plain', b'ab\x00cd\x00\n') == 'abcd\n'
    assert text_of(b'text/plain; charset=utf-16-le', 'hi\x00there'.encode('utf-16-le')) == 'hithere'


def test_utf8_text_with_a_few_stray_latin1_bytes_keeps_its_utf8_characters():
    body = 'Grüße aus 日本 '.encode() + b'caf\xe9 ' + '5 €uro'.encode()
    assert text_of(b'text/plain; charset=utf-8', body) == 'Grüße aus 日本 café 5 €uro'
    assert text_of(None, body) == 'Grüße aus 日本 café 5 €uro'


def test_quoted_printable_and_base64_bodies_are_decoded():
    assert text_of(b'text/plain; charset=utf-8', b'Gr=C3=BC=C3=9Fe, a soft=\nbreak.\n',
                   b'Content-Transfer-Encoding: quoted-printable') == 'Grüße, a softbreak.\n'
    assert text_of(b'text/plain; charset=utf-8', b'R3LDvMOfZQ==\n', b'Content-Transfer-Encoding: base64') == 'Grüße'


def test_html_charset_from_meta_tag_is_used():
    html = '<html><head><meta charset="windows-1251"></head><body><p>Привет</p></body></html>'
    mail = parse_message(message(b'Content-Type: text/html', body=html.encode('cp1251')))
    assert '<p>Привет</p>' in mail.html
    assert mail.text.strip() == 'Привет'


# ------------------------------------------------------------------------------------------ HTML to text

HTML_ONLY = '''<html><head><title>Newsletter</title><style>p { color: red }</style></head><body>
<h1>Order confirmation</h1>
<p>- Your order has shipped.</p>
<p>1. Keep this mail.</p>
<p>+ Call us at any time, 24/7.</p>
<p>Track it <a href="https://tracking.example.com/t/SECRET-TOKEN">here</a>.</p>
</body></html>'''


def test_html_only_message_gets_text_derived_from_the_html():
    mail = parse_message(message(b'Content-Type: text/html; charset=utf-8', body=HTML_ONLY.encode()))
    text = mail.text
    assert text.strip()
    for words in ('Order confirmation', 'Your order has shipped.', 'Keep this mail.', 'Call us at any time', 'Track it here'):
        assert words in text
    assert mail.html is not None and 'Order confirmation' in mail.html


def test_text_derived_from_html_has_no_markdown_escapes():
    text = parse_message(message(b'Content-Type: text/html; charset=utf-8', body=HTML_ONLY.encode())).text
    assert not re.search(r'(?m)^\s*\\', text), text
    assert '\\-' not in text and '1\\.' not in text and '\\+' not in text
    assert '- Your order has shipped.' in text
    assert '1. Keep this mail.' in text


def test_text_derived_from_html_has_no_link_urls_and_no_style_or_title():
    text = parse_message(message(b'Content-Type: text/html; charset=utf-8', body=HTML_ONLY.encode())).text
    assert 'https://' not in text and 'SECRET-TOKEN' not in text
    assert 'color: red' not in text
    assert 'Newsletter' not in text


def test_text_derived_from_html_decodes_entities():
    mail = parse_message(message(b'Content-Type: text/html', body=b'<p>Fish &amp; chips &lt;3 &euro;5</p>'))
    assert mail.text.strip() == 'Fish & chips <3 €5'


def test_text_derived_from_html_does_not_glue_table_cells_together():
    html = (b'<table><tr><td>Order number:</td><td>12345</td></tr>'
            b'<tr><td>Hello</td><td>World</td></tr></table>')
    text = parse_message(message(b'Content-Type: text/html', body=html)).text
    assert re.search(r'Order number:\s+12345', text), text
    assert re.search(r'Hello\s+World', text), text


# ------------------------------------------------------------------------------------------ format=flowed

def test_format_flowed_text_is_unflowed():
    body = b'This is a long \nparagraph that \nwas wrapped.\nA new line.\n-- \nSignature\n'
    text = text_of(b'text/plain; charset=utf-8; format=flowed', body)
    assert text == 'This is a long paragraph that was wrapped.\nA new line.\n-- \nSignature\n'


def test_format_flowed_with_delsp_removes_the_soft_break_space():
    text = text_of(b'text/plain; charset=utf-8; format=flowed; delsp=yes', b'Donau\xc3\xa4 \ndampf \nschiff.\n')
    assert text == 'Donauädampfschiff.\n'


def test_fixed_text_is_not_unflowed():
    assert text_of(b'text/plain; charset=utf-8', b'line one \nline two\n') == 'line one \nline two\n'


def test_format_flowed_quoted_lines_of_same_depth_are_unflowed():
    body = b'> This quoted paragraph \n> was wrapped.\n\nMy answer.\n'
    text = text_of(b'text/plain; format=flowed', body)
    assert text.startswith('> This quoted paragraph was wrapped.\n')


def test_format_flowed_space_stuffing_is_removed():
    body = b' From the start of the project we knew.\n >not a quote\n'
    text = text_of(b'text/plain; format=flowed', body)
    assert text == 'From the start of the project we knew.\n>not a quote\n'


# ------------------------------------------------------------------------------------------ more mislabels

JAPANESE = 'お問い合わせありがとうございます。担当者より折り返しご連絡いたします。'


def test_shift_jis_body_labelled_iso_2022_jp_is_decoded_as_japanese():
    assert text_of(b'text/plain; charset=iso-2022-jp', JAPANESE.encode('cp932')) == JAPANESE


def test_shift_jis_and_euc_jp_bodies_are_decoded():
    assert text_of(b'text/plain; charset=shift_jis', (JAPANESE + '①').encode('cp932')) == JAPANESE + '①'
    assert text_of(b'text/plain; charset=euc-jp', JAPANESE.encode('euc_jp')) == JAPANESE


def test_euc_kr_label_on_cp949_only_characters_is_decoded():
    korean = '안녕하세요 똠방각하 갂'       # 똠 and 갂 are CP949 extensions, not in KS X 1001 (EUC-KR)
    assert len('똠갂'.encode('cp949')) == 4
    assert text_of(b'text/plain; charset=euc-kr', korean.encode('cp949')) == korean


def test_single_part_text_message_with_a_name_parameter_is_shown_as_text():
    raw = message(b'Content-Type: text/plain; charset=utf-8; name="message.txt"',
                  body=b'Hello, this is the whole message.\n')
    assert parse_message(raw).text.strip() == 'Hello, this is the whole message.'
