"""Real mail that used to come out wrong, each case on a small message written for it: charsets that other parts
declare, body parts that are siblings, senders and recipients in odd forms, a header block after stray lines,
CJK text without a label, uuencoded files, stub plain-text alternatives, multipart/related resources, Markdown
in text made from HTML, named text parts after the body, names from Content-IDs."""
from __future__ import annotations

import base64
import binascii

import pytest

from ingest import Address, NotAMessage, parse_message


def mixed(*parts: bytes, headers: bytes = b'From: a@example.org\nSubject: test\n') -> bytes:
    out = headers + b'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="MIX"\n\n'
    for part in parts:
        out += b'--MIX\n' + part + b'\n'
    return out + b'--MIX--\n'


def attached_message(charset: bytes, text: str, codec: str) -> bytes:
    return (b'Content-Type: message/rfc822\n\nFrom: b@example.net\nSubject: original\n'
            b'Content-Type: text/plain; charset=' + charset + b'\n\n' + text.encode(codec))


# ------------------------------------------------------------------------------------------ 1: own label final

@pytest.mark.parametrize('charset, text, codec', [
    (b'gb2312', '你好，世界', 'gb2312'), (b'windows-1251', 'Привет, мир', 'cp1251')])
def test_latin1_label_is_final_even_when_an_attached_message_declares_another_charset(charset, text, codec):
    raw = mixed(b'Content-Type: text/plain; charset=iso-8859-1\n\nDer m\xf6gliche Fehler liegt bei \xdcbertragung.\n',
                attached_message(charset, text, codec))
    assert parse_message(raw).text.strip() == 'Der mögliche Fehler liegt bei Übertragung.'


def test_windows_1252_label_is_final_even_when_another_part_declares_gb2312():
    raw = mixed(b'Content-Type: text/plain; charset=windows-1252\n\nPreis: 5 \x80, Gr\xfc\xdfe\n',
                b'Content-Type: text/plain; charset=gb2312\n\n' + '附件'.encode('gb2312'))
    assert parse_message(raw).text.startswith('Preis: 5 €, Grüße\n')


def test_unlabelled_8bit_text_may_still_use_the_charset_another_part_declares():
    raw = mixed(b'Content-Type: text/plain\n\n' + 'Привет, мир'.encode('koi8-r') + b'\n',
                b'Content-Type: text/plain; charset=koi8-r\n\n' + 'второй'.encode('koi8-r'))
    assert parse_message(raw).text.startswith('Привет, мир\n')


# ------------------------------------------------------------------------------------------ 2: mixed siblings

PLAIN_PART = b'Content-Type: text/plain; charset=utf-8\n\nFirst, the plain words & more.\n'
HTML_PART = b'Content-Type: text/html; charset=utf-8\n\n<p>Then <b>HTML</b> words.</p>\n'
HTML_PART_2 = b'Content-Type: text/html; charset=utf-8\n\n<p>Last HTML part.</p>\n'


def test_plain_then_html_siblings_both_reach_text_and_html_in_mime_order():
    mail = parse_message(mixed(PLAIN_PART, HTML_PART))
    assert mail.text.index('First, the plain words') < mail.text.index('Then HTML words.')
    assert mail.html.index('First, the plain words &amp; more.') < mail.html.index('<b>HTML</b>')


def test_html_then_plain_siblings_keep_their_order():
    mail = parse_message(mixed(HTML_PART, PLAIN_PART))
    assert mail.text.index('Then HTML words.') < mail.text.index('First, the plain words')
    assert mail.html.index('<b>HTML</b>') < mail.html.index('First, the plain words')


def test_html_plain_html_siblings_all_reach_text_and_html():
    mail = parse_message(mixed(HTML_PART, PLAIN_PART, HTML_PART_2))
    positions = [mail.text.index(s) for s in ('Then HTML words.', 'First, the plain words', 'Last HTML part.')]
    assert positions == sorted(positions)
    positions = [mail.html.index(s) for s in ('<b>HTML</b>', 'First, the plain words', 'Last HTML part.')]
    assert positions == sorted(positions)


def test_plain_text_escaped_into_the_html_cannot_inject_markup():
    part = b'Content-Type: text/plain\n\n<script>alert(1)</script> <img src=x onerror=alert(1)>\n'
    mail = parse_message(mixed(part, HTML_PART))
    assert '<script' not in mail.html and '<img' not in mail.html
    assert '&lt;script&gt;alert(1)&lt;/script&gt;' in mail.html


def test_alternatives_still_give_one_text_and_one_html():
    raw = (b'From: a@example.org\nSubject: alt\nContent-Type: multipart/alternative; boundary="A"\n\n'
           b'--A\n' + PLAIN_PART + b'--A\n' + HTML_PART + b'--A--\n')
    mail = parse_message(raw)
    assert mail.text.strip() == 'First, the plain words & more.'
    assert 'First' not in mail.html and '<b>HTML</b>' in mail.html


# ------------------------------------------------------------------------------------------ 3: the sender

def headers_only(*lines: bytes) -> bytes:
    return b'\n'.join(lines + (b'Subject: s',)) + b'\n\nbody\n'


def test_sender_is_the_first_mailbox_with_an_address_across_from_headers():
    mail = parse_message(headers_only(b'From: "Support Team" <>', b'From: Ann <ann@example.org>'))
    assert mail.from_ == Address(name='Ann', email='ann@example.org')


def test_mailbox_without_address_in_from_gives_way_to_sender_then_reply_to():
    assert parse_message(headers_only(b'From: [??????]', b'Sender: Bob <bob@example.org>',
                                      b'Reply-To: r@example.org')).from_ == Address('Bob', 'bob@example.org')
    assert parse_message(headers_only(b'From: "Name" <>', b'Reply-To: Rita <r@example.org>')).from_ == \
        Address('Rita', 'r@example.org')


def test_first_from_mailbox_with_an_address_wins_over_sender():
    mail = parse_message(headers_only(b'From: Ann <ann@example.org>, Bob <bob@example.org>',
                                      b'Sender: sec@example.org'))
    assert mail.from_ == Address('Ann', 'ann@example.org')


def test_bare_mailer_daemon_with_comment_is_still_the_sender():
    mail = parse_message(headers_only(b'From: MAILER-DAEMON (Mail Delivery System)'))
    assert mail.from_ == Address('Mail Delivery System', 'MAILER-DAEMON')


def test_name_and_address_without_angle_brackets_are_split():
    mail = parse_message(headers_only(b'From: Test test@example.com'))
    assert mail.from_ == Address('Test', 'test@example.com')


# ------------------------------------------------------------------------------------------ 4: recipients

def test_recipient_entries_without_an_address_are_not_mailboxes():
    assert parse_message(headers_only(b'From: a@example.org', b'To: Recipients')).to == ()
    assert parse_message(headers_only(b'From: a@example.org', b'To: xxx', b'Cc: yyy, c@example.org')).cc == (
        Address('', 'c@example.org'),)


def test_display_name_with_bar_and_brackets_is_one_mailbox():
    mail = parse_message(headers_only(b'From: a@example.org', b'To: Max Kohl | [example.com] <kohl@example.com>'))
    assert mail.to == (Address('Max Kohl | [example.com]', 'kohl@example.com'),)


def test_address_only_inside_a_comment_is_taken_from_there():
    mail = parse_message(headers_only(b'From: a@example.org', b'To: Hans Meier (hans@example.com), b@example.org'))
    assert mail.to == (Address('Hans Meier', 'hans@example.com'), Address('', 'b@example.org'))


def test_an_address_written_as_display_name_is_not_the_sender_address():
    mail = parse_message(headers_only(b'From: purchasing@shop.example <do-not-reply@other.example>'))
    assert mail.from_ == Address('purchasing@shop.example', 'do-not-reply@other.example')


# ------------------------------------------------------------------------------------------ 5: stray first lines

def test_header_block_after_a_stray_first_line_is_parsed_with_a_defect():
    raw = (b'---- Original email message ----\nFrom: Ann <ann@example.org>\nTo: help@example.org\n'
           b'Subject: Where is my order?\nDate: Tue, 3 Jun 2025 10:04:05 +0200\n\nIt has not arrived.\n')
    mail = parse_message(raw)
    assert (mail.subject, mail.from_.email, mail.text) == ('Where is my order?', 'ann@example.org', 'It has not arrived.\n')
    assert any('before the header block' in d for d in mail.defects)


def test_headerless_fragment_is_still_not_a_message():
    raw = (b'Send list submissions to\n\tlist@example.org\n\nTo subscribe or unsubscribe visit\n'
           b'\thttp://example.org/list\n\nToday\'s Topics:\n\n   1. testing (Ann)\n')
    with pytest.raises(NotAMessage):
        parse_message(raw)


def test_header_block_after_too_many_stray_lines_is_not_a_message():
    raw = b'one\ntwo\nthree\nfour\nFrom: a@example.org\nTo: b@example.org\nSubject: s\n\nbody\n'
    with pytest.raises(NotAMessage):
        parse_message(raw)


# ------------------------------------------------------------------------------------------ 6: CJK without label

@pytest.mark.parametrize('text, codec', [
    ('您好，我们的产品已经发货，请注意查收。如有问题请联系客服。谢谢！', 'gb18030'),
    ('您好，我們的產品已經發貨，請注意查收。如有問題請聯繫客服。謝謝！', 'big5'),
    ('お世話になっております。ご注文の商品を発送いたしました。よろしくお願いいたします。', 'shift_jis'),
    ('안녕하세요. 주문하신 상품이 발송되었습니다. 감사합니다.', 'euc_kr')])
@pytest.mark.parametrize('content_type', [None, b'text/plain', b'text/plain; charset=us-ascii'])
def test_unlabelled_8bit_cjk_body_is_decoded_in_its_legacy_encoding(text, codec, content_type):
    body = ('Hello,\n' + text + '\nBest regards\n').encode(codec)
    headers = (b'From: a@example.org', b'Subject: cjk') + ((b'Content-Type: ' + content_type,) if content_type else ())
    mail = parse_message(b'\n'.join(headers) + b'\n\n' + body)
    assert text in mail.text


@pytest.mark.parametrize('text, codec', [('中文测试 ', 'gb18030'), ('中文測試', 'big5')])
def test_long_unlabelled_cjk_body_is_decoded_whatever_the_detector_sees_of_it(text, codec):
    body = (text * 30000).encode(codec)             # longer than the part the detector reads
    mail = parse_message(b'From: a@example.org\nSubject: s\n\n' + body)
    assert mail.text == text * 30000


def test_unlabelled_latin1_body_is_not_taken_for_cjk():
    body = 'Grüße aus München, wir möchten die Bestellung ändern. Vielen Dank für Ihre Hilfe.\n'.encode('cp1252')
    assert parse_message(b'From: a@example.org\nSubject: s\n\n' + body).text == body.decode('cp1252')


def test_latin1_subject_is_never_guessed_as_cjk():
    mail = parse_message(b'From: a@example.org\nSubject: Gr\xfc\xdfe aus M\xfcnchen \xe4\xf6\n\nbody\n')
    assert mail.subject == 'Grüße aus München äö'


# ------------------------------------------------------------------------------------------ 7: uuencode

def uuencode(data: bytes) -> bytes:
    lines = [binascii.b2a_uu(data[i:i + 45]) for i in range(0, len(data), 45)]
    return b''.join(lines) + b'`\n'


def test_uuencoded_file_in_plain_text_becomes_an_attachment_named_from_its_begin_line():
    png = base64.b64decode('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==')
    body = b'Here is the screenshot.\n\nbegin 666 screen shot.png\n' + uuencode(png) + b'end\n\nRegards, Ann\n'
    mail = parse_message(b'From: a@example.org\nSubject: uu\nContent-Type: text/plain\n\n' + body)
    assert [(a.filename, a.content_type, a.data) for a in mail.attachments] == [('screen shot.png', 'image/png', png)]
    assert 'begin 666' not in mail.text and 'end\n' not in mail.text
    assert 'Here is the screenshot.' in mail.text and 'Regards, Ann' in mail.text


def test_begin_line_without_end_stays_text():
    body = b'To begin 666 things, read on.\nbegin 644 notes.txt\nthis is not uuencode at all\n'
    mail = parse_message(b'From: a@example.org\nSubject: uu\n\n' + body)
    assert mail.attachments == ()
    assert 'begin 644 notes.txt' in mail.text


# ------------------------------------------------------------------------------------------ 8: stub alternative

NEWSLETTER_HTML = ('<html><body><h1>Spring news</h1>' + ''.join(
    '<p>Paragraph %d of the newsletter with real content about our products and shops.</p>' % i
    for i in range(12)) + '</body></html>')


def alternative(plain: str, html: str) -> bytes:
    return ('From: news@example.org\nSubject: news\nContent-Type: multipart/alternative; boundary="A"\n\n'
            '--A\nContent-Type: text/plain; charset=utf-8\n\n%s\n--A\nContent-Type: text/html; charset=utf-8\n\n'
            '%s\n--A--\n' % (plain, html)).encode()


def test_stub_plain_alternative_gives_way_to_the_html_text():
    mail = parse_message(alternative('Read this newsletter online: https://news.example.org/spring', NEWSLETTER_HTML))
    assert 'Paragraph 11 of the newsletter' in mail.text
    assert 'Read this newsletter online' not in mail.text


def test_plain_alternative_of_similar_length_is_kept():
    plain = '\n'.join('Paragraph %d of the newsletter with real content.' % i for i in range(12))
    mail = parse_message(alternative(plain, NEWSLETTER_HTML))
    assert mail.text.strip() == plain


def test_short_plain_alternative_next_to_short_html_is_kept():
    mail = parse_message(alternative('Thanks!', '<p>Thanks! <b>See you</b> on Monday at the shop.</p>'))
    assert mail.text.strip() == 'Thanks!'


# ------------------------------------------------------------------------------------------ 9: related root

def related(*parts: bytes, start: bytes = b'') -> bytes:
    out = b'From: a@example.org\nSubject: related\nContent-Type: multipart/related; boundary="R"' + start + b'\n\n'
    for part in parts:
        out += b'--R\n' + part + b'\n'
    return out + b'--R--\n'


def test_only_the_first_part_of_multipart_related_is_body():
    mail = parse_message(related(b'Content-Type: text/html\n\n<p>The root.</p>',
                                 b'Content-Type: text/html\nContent-ID: <frame@x>\n\n<p>A resource.</p>'))
    assert 'The root.' in mail.text and 'A resource.' not in mail.text
    assert 'A resource.' not in mail.html
    assert [a.content_type for a in mail.attachments] == ['text/html']


def test_start_parameter_names_the_root_of_multipart_related():
    mail = parse_message(related(b'Content-Type: text/html\nContent-ID: <other@x>\n\n<p>A resource.</p>',
                                 b'Content-Type: text/html\nContent-ID: <root@x>\n\n<p>The root.</p>',
                                 start=b'; start="<root@x>"'))
    assert 'The root.' in mail.html and 'A resource.' not in mail.html
    assert [a.content_id for a in mail.attachments] == ['other@x']


# ------------------------------------------------------------------------------------------ 11: named text part

def test_text_part_with_a_file_name_after_the_body_is_a_file_only():
    mail = parse_message(mixed(b'Content-Type: text/plain\n\nPlease see the log.\n',
                               b'Content-Type: text/plain; name="server.log"\n\nERROR disk full\n'))
    assert mail.text.strip() == 'Please see the log.'
    assert [a.filename for a in mail.attachments] == ['server.log']


# ------------------------------------------------------------------------------------------ 12: Content-ID names

def test_nameless_image_with_a_serial_content_id_is_named_from_its_type():
    mail = parse_message(related(b'Content-Type: text/html\n\n<img src="cid:32497.1617621278.2@mail.example">',
                                 b'Content-Type: image/jpeg\nContent-ID: <32497.1617621278.2@mail.example>\n\nJFIF'))
    assert [a.filename for a in mail.attachments] == ['image.jpg']


# ------------------------------------------------------------------------------------------ 10: no Markdown

def test_text_made_from_html_has_no_markdown_rules_headings_or_strike_through():
    html = ('<h1>Order shipped</h1><p>Your parcel is on its way.</p><hr><h3>Items</h3>'
            '<ul><li>Blue mug</li><li>Red plate</li></ul><p>Price: <del>20 EUR</del> <s>18</s> 15 EUR</p>')
    text = parse_message(b'From: a@example.org\nSubject: s\nContent-Type: text/html\n\n' + html.encode()).text
    assert '* * *' not in text and '~~' not in text and '#' not in text
    assert 'Order shipped' in text and 'Items' in text and '20 EUR 18 15 EUR' in text
    assert '* Blue mug' in text and '* Red plate' in text
