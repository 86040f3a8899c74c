"""Header decoding as a mail user sees it: subjects, display names, addresses, identifiers and dates.

Every test builds its own small message; the expectations are what a mail client shows a person.
"""
from __future__ import annotations

import base64
import datetime
import json
import re

import pytest

from ingest import Address, parse_message


def message(*header_lines: bytes, body: bytes = b'Hello.\n') -> bytes:
    """A small message: the given header lines (bytes, exactly as on the wire), a blank line, the body."""
    return b'\n'.join(header_lines) + b'\n\n' + body


def subject_of(raw_subject: bytes, *more_headers: bytes) -> str:
    return parse_message(message(b'From: a@example.org', b'Subject: ' + raw_subject, *more_headers)).subject


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


# ------------------------------------------------------------------------------------------ RFC 2047 words

def test_b_encoded_word_is_decoded():
    assert subject_of(b'=?UTF-8?B?' + b64('Grüße aus München'.encode()) + b'?=') == 'Grüße aus München'


def test_q_encoded_word_is_decoded_with_underscore_as_space():
    assert subject_of(b'=?ISO-8859-1?Q?Caf=E9_au_lait?=') == 'Café au lait'


def test_lower_case_charset_and_encoding_letters_are_accepted():
    assert subject_of(b'=?utf-8?b?' + b64('Grüße'.encode()) + b'?=') == 'Grüße'
    assert subject_of(b'=?utf-8?q?Gr=C3=BC=C3=9Fe?=') == 'Grüße'


def test_encoded_word_with_rfc2231_language_suffix_is_decoded():
    assert subject_of(b'=?UTF-8*de?Q?Gr=C3=BC=C3=9Fe?=') == 'Grüße'


def test_iso_8859_1_encoded_word_is_read_as_windows_1252():
    # Senders label Windows-1252 text ISO-8859-1; byte 0x80 is the euro sign there.
    assert subject_of(b'=?ISO-8859-1?B?' + b64('Über 5 €'.encode('cp1252')) + b'?=') == 'Über 5 €'


def test_windows_1251_encoded_word_is_decoded():
    assert subject_of(b'=?windows-1251?B?' + b64('Привет'.encode('cp1251')) + b'?=') == 'Привет'


def test_encoded_word_inside_quotes_in_display_name_is_decoded():
    mail = parse_message(message(b'From: "=?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?=" <j@example.de>'))
    assert mail.from_ == Address(name='Jürgen Müller', email='j@example.de')


def test_adjacent_encoded_words_separated_by_whitespace_are_joined_without_it():
    assert subject_of(b'=?UTF-8?Q?Hello?= =?UTF-8?Q?World?=') == 'HelloWorld'


def test_adjacent_encoded_words_separated_by_a_fold_are_joined_without_it():
    assert subject_of(b'=?UTF-8?Q?Hello?=\n =?UTF-8?Q?World?=') == 'HelloWorld'
    assert subject_of(b'=?UTF-8?Q?Hello?=\r\n\t=?UTF-8?Q?World?=') == 'HelloWorld'


def test_adjacent_encoded_words_in_different_charsets_are_joined():
    assert subject_of(b'=?ISO-8859-1?Q?Caf=E9?= =?UTF-8?Q?_cr=C3=A8me?=') == 'Café crème'


def test_encoded_word_followed_by_plain_text_keeps_the_space():
    assert subject_of(b'=?UTF-8?Q?Gr=C3=BC=C3=9Fe?= from Berlin') == 'Grüße from Berlin'


def test_plain_text_followed_by_encoded_word_keeps_the_space():
    assert subject_of(b'Re: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= again') == 'Re: Grüße again'


def test_encoded_word_with_literal_spaces_inside_is_still_decoded():
    # Not allowed by RFC 2047, but written by some mailers.
    assert subject_of(b'=?UTF-8?Q?Hello World?=') == 'Hello World'


def test_encoded_word_split_mid_character_is_joined_before_decoding():
    euro = '€'.encode()                    # E2 82 AC
    raw = b'=?UTF-8?Q?Preis_10_=E2=82?= =?UTF-8?Q?=AC?='
    assert euro == b'\xe2\x82\xac'
    assert subject_of(raw) == 'Preis 10 €'


def test_b_encoded_words_split_mid_character_are_joined_before_decoding():
    data = '日本語のメール'.encode()
    raw = b'=?UTF-8?B?' + b64(data[:4]) + b'?=\n =?utf-8?B?' + b64(data[4:10]) + b'?= =?UTF-8?B?' + b64(data[10:]) + b'?='
    assert subject_of(raw) == '日本語のメール'


def test_raw_8bit_bytes_inside_q_encoded_word_are_decoded_in_its_charset():
    assert subject_of(b'=?UTF-8?Q?Gr\xc3\xbc\xc3\x9fe_aus_K\xc3\xb6ln?=') == 'Grüße aus Köln'


def test_gb2312_label_on_gbk_only_characters_is_decoded_as_gbk():
    # 镕 and 堃 are in GBK but not in GB2312; mailers label such text GB2312 anyway.
    with pytest.raises(UnicodeEncodeError):
        '镕'.encode('gb2312')
    assert subject_of(b'=?GB2312?B?' + b64('朱镕基总理'.encode('gbk')) + b'?=') == '朱镕基总理'
    assert subject_of(b'=?gb2312?Q?' + b''.join(b'=%02X' % c for c in '王堃'.encode('gbk')) + b'?=') == '王堃'


def test_iso_2022_jp_encoded_word_with_nec_special_characters_is_decoded():
    # Windows writes ISO-2022-JP with the NEC row 13 characters (① is 0x2D21, № is 0x2D62), which
    # Python's iso2022_jp codecs reject.
    with pytest.raises(UnicodeEncodeError):
        '①'.encode('iso2022_jp_ext')
    kana = 'お知らせ'.encode('iso2022_jp')[3:-3]            # the JIS X 0208 bytes between the escapes
    jis = b'\x1b$B' + kana + b'\x2d\x21\x2d\x62' + b'\x1b(B'
    assert subject_of(b'=?ISO-2022-JP?B?' + b64(jis) + b'?=') == 'お知らせ①№'


def test_raw_iso_2022_jp_header_without_encoded_word_is_decoded():
    assert subject_of('会議の案内'.encode('iso2022_jp')) == '会議の案内'


# ------------------------------------------------------------------------------------------ raw 8-bit

def test_raw_8bit_utf8_header_without_encoded_word_is_decoded():
    assert subject_of('Grüße aus München – 日本'.encode()) == 'Grüße aus München – 日本'


def test_raw_8bit_latin1_header_falls_back_to_windows_1252():
    assert subject_of(b'Caf\xe9') == 'Café'
    assert subject_of(b'Preis: 5 \x80') == 'Preis: 5 €'


def test_raw_8bit_display_name_in_latin1_is_decoded():
    mail = parse_message(message(b'From: J\xfcrgen M\xfcller <j@example.de>'))
    assert mail.from_ == Address(name='Jürgen Müller', email='j@example.de')


def test_raw_8bit_header_is_decoded_in_the_charset_the_body_declares():
    raw = message(b'From: a@example.org', b'Subject: ' + 'Привет, мир'.encode('koi8-r'),
                  b'Content-Type: text/plain; charset=koi8-r', body='Текст письма'.encode('koi8-r'))
    mail = parse_message(raw)
    assert mail.subject == 'Привет, мир'
    assert mail.text.strip() == 'Текст письма'


# ------------------------------------------------------------------------------------------ unfolding

def test_folded_subject_unfolds_to_one_line():
    subject = subject_of(b'This is a long\n subject that was\n\tfolded twice')
    assert subject == 'This is a long subject that was folded twice'


def test_folded_subject_with_crlf_unfolds_to_one_line():
    raw = b'From: a@example.org\r\nSubject: This is a long\r\n subject\r\n\r\nbody\r\n'
    assert parse_message(raw).subject == 'This is a long subject'


def test_encoded_line_break_in_subject_does_not_make_a_second_line():
    subject = subject_of(b'=?UTF-8?Q?first=0D=0Asecond?=')
    assert '\r' not in subject and '\n' not in subject
    assert subject == 'first second'


# ------------------------------------------------------------------------------------------ addresses

def test_mailer_daemon_with_comment_gives_comment_as_name():
    mail = parse_message(message(b'From: MAILER-DAEMON (Mail Delivery System)'))
    assert mail.from_ == Address(name='Mail Delivery System', email='MAILER-DAEMON')


def test_address_with_trailing_comment_uses_comment_as_name():
    mail = parse_message(message(b'From: a@example.org', b'To: john@example.org (John Doe)'))
    assert mail.to == (Address(name='John Doe', email='john@example.org'),)


def test_quoted_display_name_alone_gives_name_and_empty_email():
    mail = parse_message(message(b'From: "John Doe"'))
    assert mail.from_ == Address(name='John Doe', email='')


def test_duplicate_from_headers_use_the_first():
    mail = parse_message(message(b'From: First <first@example.org>', b'From: Second <second@example.org>'))
    assert mail.from_ == Address(name='First', email='first@example.org')


def test_unquoted_comma_in_display_name_gives_one_address():
    mail = parse_message(message(b'From: Doe, John <j@example.org>'))
    assert mail.from_ == Address(name='Doe, John', email='j@example.org')


def test_unquoted_comma_names_in_a_list_give_one_address_each():
    mail = parse_message(message(b'From: a@example.org', b'To: Doe, John <j@example.org>, Smith, Ann <a@example.org>'))
    assert mail.to == (Address(name='Doe, John', email='j@example.org'),
                       Address(name='Smith, Ann', email='a@example.org'))


def test_quoted_comma_in_display_name_gives_one_address():
    mail = parse_message(message(b'From: a@example.org', b'To: "Doe, John" <j@example.org>, Jane <jane@example.org>'))
    assert mail.to == (Address(name='Doe, John', email='j@example.org'),
                       Address(name='Jane', email='jane@example.org'))


def test_encoded_word_display_name_with_comma_gives_one_address():
    mail = parse_message(message(b'From: =?UTF-8?Q?M=C3=BCller=2C_J=C3=BCrgen?= <jm@example.de>'))
    assert mail.from_ == Address(name='Müller, Jürgen', email='jm@example.de')


def test_encoded_word_display_names_with_commas_in_a_list():
    mail = parse_message(message(
        b'From: a@example.org',
        b'To: =?UTF-8?Q?M=C3=BCller=2C_J=C3=BCrgen?= <jm@example.de>, b@example.org',
        b'Cc: "=?UTF-8?B?' + b64('Doe, Jane'.encode()) + b'?=" <jd@example.org>'))
    assert mail.to == (Address(name='Müller, Jürgen', email='jm@example.de'), Address(name='', email='b@example.org'))
    assert mail.cc == (Address(name='Doe, Jane', email='jd@example.org'),)


def test_bare_and_angle_bracket_addresses_have_no_name():
    mail = parse_message(message(b'From: <j@example.org>', b'To: k@example.org', b'Reply-To: <r@example.org>'))
    assert mail.from_ == Address(name='', email='j@example.org')
    assert mail.to == (Address(name='', email='k@example.org'),)
    assert mail.reply_to == (Address(name='', email='r@example.org'),)


def test_undisclosed_recipients_group_has_no_addresses():
    mail = parse_message(message(b'From: a@example.org', b'To: undisclosed-recipients:;'))
    assert mail.to == ()


def test_group_syntax_gives_its_members():
    mail = parse_message(message(b'From: a@example.org', b'To: Team: a@example.org, b@example.org;'))
    assert [a.email for a in mail.to] == ['a@example.org', 'b@example.org']


def test_semicolon_separated_addresses_as_outlook_writes_them_give_each_address():
    mail = parse_message(message(b'From: a@example.org', b'To: Ann <ann@example.org>; Bob <bob@example.org>'))
    assert mail.to == (Address(name='Ann', email='ann@example.org'), Address(name='Bob', email='bob@example.org'))


def test_escaped_quotes_in_display_name_are_unescaped():
    mail = parse_message(message(b'From: "John \\"JD\\" Doe" <jd@example.org>'))
    assert mail.from_ == Address(name='John "JD" Doe', email='jd@example.org')


def test_whole_mailbox_inside_an_encoded_word_is_decoded_then_parsed():
    word = b'=?UTF-8?B?' + b64('Jürgen Müller <jm@example.de>'.encode()) + b'?='
    mail = parse_message(message(b'From: ' + word))
    assert mail.from_ == Address(name='Jürgen Müller', email='jm@example.de')


def test_raw_utf8_international_address_is_kept():
    mail = parse_message(message('From: "Jürgen" <jürgen@例え.jp>'.encode()))
    assert mail.from_ == Address(name='Jürgen', email='jürgen@例え.jp')


def test_address_list_folded_without_whitespace_keeps_every_address():
    raw = message(b'From: a@example.org', b'To: b@example.org,', b'c@example.org', b'Subject: after the break')
    mail = parse_message(raw)
    assert [a.email for a in mail.to] == ['b@example.org', 'c@example.org']
    assert mail.subject == 'after the break'


# ------------------------------------------------------------------------------------------ identifiers

def test_message_id_brackets_are_stripped():
    assert parse_message(message(b'Message-ID: <abc.123@example.org>')).message_id == 'abc.123@example.org'


def test_message_id_without_brackets_and_folded_is_read():
    assert parse_message(message(b'Message-ID: abc@example.org')).message_id == 'abc@example.org'
    assert parse_message(message(b'Message-ID:\n <abc@example.org>')).message_id == 'abc@example.org'


def test_missing_message_id_is_none():
    assert parse_message(message(b'From: a@example.org')).message_id is None


def test_in_reply_to_with_trailing_comment_gives_only_the_id():
    mail = parse_message(message(b'In-Reply-To: <parent@example.org> (message from John of Monday)'))
    assert mail.in_reply_to == ('parent@example.org',)


def test_references_with_several_folded_ids_keep_their_order():
    mail = parse_message(message(
        b'Message-ID: <m4@example.org>',
        b'In-Reply-To: <m3@example.org>',
        b'References: <m1@example.org> <m2@example.org>\n <m3.a@example.org>\r\n\t<m3@example.org>'))
    assert mail.message_id == 'm4@example.org'
    assert mail.in_reply_to == ('m3@example.org',)
    assert mail.references == ('m1@example.org', 'm2@example.org', 'm3.a@example.org', 'm3@example.org')


def test_references_without_whitespace_between_ids_are_split():
    mail = parse_message(message(b'References: <m1@example.org><m2@example.org>'))
    assert mail.references == ('m1@example.org', 'm2@example.org')


def test_no_in_reply_to_or_references_gives_empty_tuples():
    mail = parse_message(message(b'From: a@example.org'))
    assert mail.in_reply_to == () and mail.references == ()


# ------------------------------------------------------------------------------------------ dates

def test_date_keeps_the_senders_offset_in_iso_format():
    mail = parse_message(message(b'Date: Tue, 3 Jun 2025 10:04:05 +0200'))
    assert mail.date == datetime.datetime(2025, 6, 3, 10, 4, 5, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    assert mail.to_json('x')['date'] == '2025-06-03T10:04:05+02:00'


def test_date_with_negative_offset_and_zone_comment():
    mail = parse_message(message(b'Date: Tue, 3 Jun 2025 10:04:05 -0500 (EST)'))
    assert mail.to_json('x')['date'] == '2025-06-03T10:04:05-05:00'


def test_date_in_gmt_is_aware_utc():
    mail = parse_message(message(b'Date: Tue, 3 Jun 2025 10:04:05 GMT'))
    assert mail.date.utcoffset() == datetime.timedelta(0)
    assert mail.to_json('x')['date'] == '2025-06-03T10:04:05+00:00'


def test_obsolete_two_digit_year_and_zone_name_are_read():
    mail = parse_message(message(b'Date: 3 Jun 25 10:04 EST'))
    assert mail.to_json('x')['date'] == '2025-06-03T10:04:00-05:00'


def test_bad_date_gives_none():
    assert parse_message(message(b'Date: not a date at all')).date is None
    assert parse_message(message(b'Date: Tue, 31 Feb 2025 10:04:05 +0200')).date is None


def test_missing_date_gives_none():
    assert parse_message(message(b'From: a@example.org')).date is None


def test_date_with_a_german_month_name_is_read():
    mail = parse_message(message(b'From: a@example.org', b'Subject: Termin', b'Date: 3 Dez 2025 10:04:05 +0100'))
    assert mail.subject == 'Termin'
    assert mail.date == datetime.datetime(2025, 12, 3, 9, 4, 5, tzinfo=datetime.timezone.utc)


# ------------------------------------------------------------------------------------------ clean text

_NOT_TEXT = re.compile('[\x00\ud800-\udfff]')


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


def test_no_nul_or_surrogates_anywhere_in_header_output():
    raw = message(
        b'From: "Bad\x00 N\xe9me" <a\x00b@example.org>',
        b'To: =?UTF-8?Q?nul=00name?= <c@example.org>, \xff\xfe <d@example.org>',
        b'Cc: =?UTF-7?Q?+2AA-?= <e@example.org>',
        b'Subject: =?UTF-8?B?' + b64(b'\xed\xa0\x80 surrogate \x00 nul') + b'?= \xc3 \x00 tail',
        b'Message-ID: <id\x00\xff@example.org>',
        b'In-Reply-To: <p\x00@example.org>',
        b'References: <r\xed\xa0\x80@example.org>',
        b'Date: Tue, 3 Jun 2025 10:04:05 +0200\x00')
    mail = parse_message(raw)
    data = mail.to_json('x')
    for text in _strings(data):
        assert not _NOT_TEXT.search(text), text
    json.dumps(data, ensure_ascii=False).encode('utf-8')
    assert 'tail' in mail.subject                     # the readable rest of the header is kept


def test_date_with_colon_in_offset_is_not_shifted_to_utc():
    mail = parse_message(message(b'Date: Tue, 3 Jun 2025 10:04:05 +02:00'))
    assert mail.date == datetime.datetime(2025, 6, 3, 8, 4, 5, tzinfo=datetime.timezone.utc)
    assert mail.date.utcoffset() == datetime.timedelta(hours=2)


def test_raw_shift_jis_subject_in_iso_2022_jp_message_is_decoded_as_japanese():
    subject = '会議の案内について'
    raw = message(b'From: a@example.org', b'Subject: ' + subject.encode('cp932'),
                  b'Content-Type: text/plain; charset=iso-2022-jp', body='本文です。\n'.encode('iso2022_jp'))
    assert parse_message(raw).subject == subject
