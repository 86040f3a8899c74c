"""Attachments as an agent downloads them: the right file name, the decoded bytes, a stable name for nameless
parts, Outlook's winmail.dat unpacked."""
from __future__ import annotations

import base64
import hashlib
import quopri
import struct

import pytest

from ingest import parse_message


def with_parts(*parts: bytes, content_type: bytes = b'multipart/mixed') -> bytes:
    """A message whose body is a text part followed by the given MIME parts (each: headers, blank line, body)."""
    out = (b'From: a@example.org\nSubject: files\nMIME-Version: 1.0\nContent-Type: ' + content_type
           + b'; boundary="BOUNDARY"\n\n--BOUNDARY\nContent-Type: text/plain\n\nSee attached.\n')
    for part in parts:
        out += b'--BOUNDARY\n' + part + b'\n'
    return out + b'--BOUNDARY--\n'


def names(raw: bytes) -> list[str]:
    return [a.filename for a in parse_message(raw).attachments]


def pdf_part(*headers: bytes) -> bytes:
    return b'\n'.join((b'Content-Type: application/pdf',) + headers) + b'\n\n%PDF-1.4'


# ------------------------------------------------------------------------------------------ name precedence

def test_content_disposition_filename_wins_over_every_other_name():
    part = (b'Content-Type: application/pdf; name="from-type.pdf"\n'
            b'Content-Disposition: attachment; filename="from-disposition.pdf"\n'
            b'Content-Location: https://example.org/files/from-location.pdf\n'
            b'Content-ID: <from-cid.pdf@example.org>\n\n%PDF-1.4')
    assert names(with_parts(part)) == ['from-disposition.pdf']


def test_content_type_name_is_used_without_disposition_filename():
    part = (b'Content-Type: application/pdf; name="from-type.pdf"\n'
            b'Content-Disposition: attachment\n'
            b'Content-Location: https://example.org/files/from-location.pdf\n'
            b'Content-ID: <from-cid.pdf@example.org>\n\n%PDF-1.4')
    assert names(with_parts(part)) == ['from-type.pdf']


def test_content_location_is_used_without_declared_names():
    part = (b'Content-Type: application/pdf\n'
            b'Content-Disposition: attachment\n'
            b'Content-Location: https://example.org/files/from%20location.pdf\n'
            b'Content-ID: <from-cid.pdf@example.org>\n\n%PDF-1.4')
    assert names(with_parts(part)) == ['from location.pdf']


def test_content_id_local_part_is_used_without_other_names():
    part = b'Content-Type: application/pdf\nContent-Disposition: attachment\nContent-ID: <from-cid.pdf@example.org>\n\n%PDF-1.4'
    assert names(with_parts(part)) == ['from-cid.pdf']


def test_content_id_without_a_known_extension_does_not_name_the_file():
    part = b'Content-Type: image/png\nContent-ID: <logo@example.org>\nContent-Transfer-Encoding: base64\n\niVBORw0KGgo='
    assert names(with_parts(part)) == ['image.png']


def test_content_id_that_is_a_serial_number_gives_a_name_from_the_type():
    part = (b'Content-Type: image/jpeg\nContent-ID: <32497.1617621278.2@mail.example.org>\n'
            b'Content-Transfer-Encoding: base64\n\n/9j/4AAQ')
    assert names(with_parts(part)) == ['image.jpg']


def test_content_id_ending_in_a_known_extension_names_the_file():
    part = (b'Content-Type: image/png\nContent-ID: <image001.png@01D2A1B2.C3D4E5F0>\n'
            b'Content-Transfer-Encoding: base64\n\niVBORw0KGgo=')
    assert names(with_parts(part)) == ['image001.png']


def test_name_from_mime_type_is_the_last_resort():
    assert names(with_parts(b'Content-Type: application/pdf\nContent-Disposition: attachment\n\n%PDF-1.4')) == ['attachment.pdf']


# ------------------------------------------------------------------------------------------ encoded names

def test_rfc2231_utf8_filename_is_decoded():
    part = pdf_part(b"Content-Disposition: attachment; filename*=UTF-8''Gr%C3%BC%C3%9Fe%20%E2%82%AC.pdf")
    assert names(with_parts(part)) == ['Grüße €.pdf']


def test_rfc2231_continued_filename_is_joined():
    part = pdf_part(b"Content-Disposition: attachment;\n filename*0*=UTF-8''Sehr%20langer%20Dateiname%20;\n"
                    b" filename*1*=mit%20Umlaut%20%C3%A4.pdf")
    assert names(with_parts(part)) == ['Sehr langer Dateiname mit Umlaut ä.pdf']


def test_rfc2231_continuations_out_of_order_are_joined_in_index_order():
    part = pdf_part(b'Content-Disposition: attachment; filename*1="name.pdf"; filename*0="long "')
    assert names(with_parts(part)) == ['long name.pdf']


def test_rfc2231_latin1_filename_is_decoded():
    part = b"Content-Type: application/pdf; name*=iso-8859-1'de'Bestellbest%E4tigung.pdf\n\n%PDF"
    assert names(with_parts(part)) == ['Bestellbestätigung.pdf']


def test_rfc2231_extended_filename_wins_over_plain_one_given_too():
    part = pdf_part(b"Content-Disposition: attachment; filename=\"Rechnung Marz.pdf\"; filename*=UTF-8''Rechnung%20M%C3%A4rz.pdf")
    assert names(with_parts(part)) == ['Rechnung März.pdf']


def test_rfc2047_encoded_filename_is_decoded():
    word = b'=?UTF-8?B?' + base64.b64encode('Rechnung März.pdf'.encode()) + b'?='
    assert names(with_parts(pdf_part(b'Content-Disposition: attachment; filename="' + word + b'"'))) == ['Rechnung März.pdf']
    assert names(with_parts(b'Content-Type: application/pdf; name="' + word + b'"\n\n%PDF')) == ['Rechnung März.pdf']


def test_rfc2047_filename_split_mid_character_is_decoded():
    part = pdf_part(b'Content-Disposition: attachment; filename="=?UTF-8?Q?Rechnung_M=C3?= =?UTF-8?Q?=A4rz.pdf?="')
    assert names(with_parts(part)) == ['Rechnung März.pdf']


def test_raw_8bit_utf8_filename_is_decoded():
    part = pdf_part(b'Content-Disposition: attachment; filename="Rechnung M\xc3\xa4rz \xe6\x97\xa5\xe6\x9c\xac.pdf"')
    assert names(with_parts(part)) == ['Rechnung März 日本.pdf']


def test_raw_8bit_latin1_filename_is_decoded_as_windows_1252():
    part = pdf_part(b'Content-Disposition: attachment; filename="Rechnung M\xe4rz.pdf"')
    assert names(with_parts(part)) == ['Rechnung März.pdf']


def test_unquoted_filename_with_spaces_is_kept_whole():
    assert names(with_parts(pdf_part(b'Content-Disposition: attachment; filename=my report.pdf'))) == ['my report.pdf']


# ------------------------------------------------------------------------------------------ path components

def test_windows_path_in_filename_is_stripped_to_the_file_name():
    # The quoted-string as escaped by a careful sender: "C:\\Users\\x\\report.pdf".
    part = pdf_part(b'Content-Disposition: attachment; filename="C:\\\\Users\\\\x\\\\report.pdf"')
    assert names(with_parts(part)) == ['report.pdf']


def test_unquoted_windows_path_in_filename_is_stripped_to_the_file_name():
    part = pdf_part(b'Content-Disposition: attachment; filename=C:\\Users\\x\\report.pdf')
    assert names(with_parts(part)) == ['report.pdf']


def test_windows_path_with_single_backslashes_in_quotes_is_stripped_to_the_file_name():
    part = pdf_part(b'Content-Disposition: attachment; filename="C:\\Users\\x\\report.pdf"')
    assert names(with_parts(part)) == ['report.pdf']


def test_unix_path_and_parent_references_are_stripped():
    assert names(with_parts(pdf_part(b'Content-Disposition: attachment; filename="../../etc/passwd"'))) == ['passwd']
    assert names(with_parts(pdf_part(b'Content-Disposition: attachment; filename="/tmp/dir/report.pdf"'))) == ['report.pdf']


def test_control_characters_are_removed_from_file_names():
    part = pdf_part(b'Content-Disposition: attachment; filename="=?UTF-8?Q?bad=00=0Aname=07.pdf?="')
    [name] = names(with_parts(part))
    assert not any(ord(c) < 32 for c in name)
    assert name.startswith('bad') and 'name' in name and name.endswith('.pdf')


# ------------------------------------------------------------------------------------------ nameless parts

NAMELESS = with_parts(
    b'Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\nAAECAw==',
    b'Content-Type: text/calendar; method=REQUEST\n\nBEGIN:VCALENDAR\nEND:VCALENDAR',
    b'Content-Type: image/png\nContent-Transfer-Encoding: base64\n\niVBORw0KGgo=',
    b'Content-Type: image/png\nContent-Transfer-Encoding: base64\n\niVBORw0KGgoA',
)


def test_nameless_parts_are_named_from_their_mime_type_never_randomly():
    """The rule for parts that carry no name at all: a name made from the MIME type, numbered when repeated.

    Peers disagree: php-mime-mail-parser calls such a part 'noname1', mail-parser gives it a random name.
    postdesk names it from its MIME type, as Zammad does, so that the downloaded file opens with the right
    program and the same message always gives the same names.
    """
    assert names(NAMELESS) == ['attachment.bin', 'calendar.ics', 'image.png', 'image1.png']


def test_nameless_parts_get_the_same_names_every_time():
    first = [(a.filename, a.sha256) for a in parse_message(NAMELESS).attachments]
    second = [(a.filename, a.sha256) for a in parse_message(NAMELESS).attachments]
    assert first == second


def test_nameless_common_types_get_their_usual_extension():
    raw = with_parts(b'Content-Type: image/jpeg\n\nJFIF', b'Content-Type: application/pdf\n\n%PDF', b'Content-Type: audio/mpeg\n\nID3')
    assert names(raw) == ['image.jpg', 'attachment.pdf', 'audio.mp3']


def test_nameless_word_document_is_named_with_docx_extension():
    raw = with_parts(b'Content-Type: application/vnd.openxmlformats-officedocument.wordprocessingml.document\n\nPK')
    assert names(raw) == ['attachment.docx']


# ------------------------------------------------------------------------------------------ attached messages

def test_attached_message_is_named_after_its_subject():
    part = (b'Content-Type: message/rfc822\n\nFrom: b@example.net\nSubject: Your order 123/456\n'
            b'Message-ID: <o@example.net>\n\nWhere is it?\n')
    mail = parse_message(with_parts(part))
    assert [(a.filename, a.content_type) for a in mail.attachments] == [('Your order 123-456.eml', 'message/rfc822')]
    assert b'Where is it?' in mail.attachments[0].data


def test_attached_message_with_encoded_subject_is_named_after_the_decoded_subject():
    part = b'Content-Type: message/rfc822\n\nFrom: b@example.net\nSubject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\n\nHallo\n'
    assert names(with_parts(part)) == ['Grüße.eml']


def test_attached_message_without_subject_gets_a_generic_name():
    part = b'Content-Type: message/rfc822\n\nFrom: b@example.net\n\nHallo\n'
    [name] = names(with_parts(part))
    assert name.endswith('.eml') and len(name) > 4


@pytest.mark.parametrize('line_end', [b'\r\n', b'\n'])
def test_attached_message_is_kept_byte_for_byte_as_its_signatures_need(line_end):
    inner = (b'From: b@example.net\nSubject: Your order\n  folded over two lines\n'
             b'DKIM-Signature: v=1; a=rsa-sha256; d=example.net; s=s1;\n\th=from:subject; bh=YWJj; b=ZGVm\n'
             b'Content-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: 8bit\n\n'
             b'Caf\xe9 au lait  \n\nFrom here on, the end.\n').replace(b'\n', line_end)
    nested = (b'Content-Type: multipart/mixed; boundary="INNER"\n\n--INNER\nContent-Type: message/rfc822\n\n'
              .replace(b'\n', line_end) + inner + line_end + b'--INNER--' + line_end)
    raw = with_parts(b'Content-Type: message/rfc822\n\n'.replace(b'\n', line_end) + inner,
                     nested).replace(b'\n', line_end).replace(b'\r\r\n', b'\r\n')
    mail = parse_message(raw)
    assert [a.data for a in mail.attachments] == [inner, inner]     # the line break before a delimiter is its own


def test_an_attached_message_nested_past_the_stacks_depth_is_still_one_attachment():
    inner = b'From: x@example.net\nSubject: leaf\n\nthe innermost text\n'
    for level in range(300):
        inner = b'From: a@example.net\nSubject: level %d\nContent-Type: message/rfc822\n\n' % level + inner
    mail = parse_message(b'From: a@example.org\nSubject: deep\nContent-Type: message/rfc822\n\n' + inner)
    [attached] = mail.attachments
    assert attached.data == inner


def test_bytes_that_only_look_like_the_attached_message_are_not_taken_for_it():
    """The header block ends where the parser ended it (at a line that is no field), not at the blank line."""
    raw = with_parts(b'Content-Type: message/rfc822\n\nX\nFrom: i@example.net\nSubject: fake\n\nfake body')
    [attached] = parse_message(raw).attachments
    assert attached.data != b'fake body' and b'From: i@example.net' in attached.data


@pytest.mark.parametrize('encoding', ['base64', 'quoted-printable'])
def test_transfer_encoded_attached_message_is_decoded_and_named_after_its_subject(encoding):
    inner = 'From: b@example.net\nSubject: Über uns\n\nHallo\n'.encode()
    encoded = base64.encodebytes(inner) if encoding == 'base64' else quopri.encodestring(inner)
    part = b'Content-Type: message/rfc822\nContent-Transfer-Encoding: ' + encoding.encode() + b'\n\n' + encoded
    mail = parse_message(with_parts(part))
    assert [a.filename for a in mail.attachments] == ['Über uns.eml']
    assert mail.attachments[0].data.replace(b'\r\n', b'\n').rstrip(b'\n') == inner.rstrip(b'\n')


# ------------------------------------------------------------------------------------------ content and ids

PNG = base64.b64decode('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==')


def test_cid_image_in_multipart_related_is_inline_with_bare_content_id():
    raw = (b'From: a@example.org\nSubject: related\nContent-Type: multipart/related; boundary="R"\n\n'
           b'--R\nContent-Type: text/html\n\n<p>Logo: <img src="cid:logo123@example.org"></p>\n'
           b'--R\nContent-Type: image/png\nContent-ID: <logo123@example.org>\nContent-Transfer-Encoding: base64\n\n'
           + base64.encodebytes(PNG) + b'--R--\n')
    mail = parse_message(raw)
    [image] = mail.attachments
    assert image.content_id == 'logo123@example.org'
    assert image.inline is True
    assert image.content_type == 'image/png'
    assert image.filename == 'image.png'         # `logo123` has no extension: the name comes from the type
    assert 'src="cid:logo123@example.org"' in mail.html


def test_attachment_without_content_id_has_none_and_is_not_inline():
    [pdf] = parse_message(with_parts(pdf_part(b'Content-Disposition: attachment; filename="a.pdf"'))).attachments
    assert pdf.content_id is None
    assert pdf.inline is False


def test_sha256_and_size_match_the_decoded_bytes():
    data = bytes(range(256)) * 3
    part = (b'Content-Type: application/octet-stream; name="blob.bin"\nContent-Transfer-Encoding: base64\n\n'
            + base64.encodebytes(data))
    [blob] = parse_message(with_parts(part)).attachments
    assert blob.data == data
    assert blob.size == len(data) == 768
    assert blob.sha256 == hashlib.sha256(data).hexdigest()
    assert blob.to_json() == {'filename': 'blob.bin', 'content_type': 'application/octet-stream', 'size': 768,
                              'content_id': None, 'inline': False, 'sha256': hashlib.sha256(data).hexdigest()}


def test_quoted_printable_attachment_is_decoded():
    part = b'Content-Type: text/csv; name="a.csv"\nContent-Transfer-Encoding: quoted-printable\n\nname;price=0Aw=C3=BCrst;3=3D'
    [csv] = parse_message(with_parts(part)).attachments
    assert csv.data == 'name;price\nwürst;3='.encode()


def test_nul_in_content_type_or_content_id_does_not_reach_the_output():
    part = b'Content-Type: application/p\x00df; name="a.pdf"\nContent-ID: <a\x00b@example.org>\n\n%PDF'
    [pdf] = parse_message(with_parts(part)).attachments
    assert pdf.content_type == 'application/pdf'
    assert pdf.content_id == 'ab@example.org'


# ------------------------------------------------------------------------------------------ TNEF

def _tnef_attribute(level: int, name: int, kind: int, data: bytes) -> bytes:
    return struct.pack('<BHHI', level, name, kind, len(data)) + data + struct.pack('<H', sum(data) & 0xffff)


def make_tnef(files: list[tuple[bytes, bytes]]) -> bytes:
    """A minimal TNEF stream (MS-OXTNEF): signature, key, version, then per file attRenddata, attAttachTitle
    and attAttachData."""
    out = struct.pack('<IH', 0x223E9F78, 0x0001)
    out += _tnef_attribute(1, 0x9006, 0x0008, struct.pack('<I', 0x00010000))             # attTnefVersion
    for name, data in files:
        out += _tnef_attribute(2, 0x9002, 0x0006, b'\x01\x00' + b'\xff' * 4 + b'\x00' * 8)  # attRenddata
        out += _tnef_attribute(2, 0x8010, 0x0001, name + b'\x00')                         # attAttachTitle
        out += _tnef_attribute(2, 0x800F, 0x0006, data)                                   # attAttachData
    return out


def tnef_part(data: bytes, content_type: bytes = b'application/ms-tnef') -> bytes:
    return (b'Content-Type: ' + content_type + b'; name="winmail.dat"\n'
            b'Content-Disposition: attachment; filename="winmail.dat"\n'
            b'Content-Transfer-Encoding: base64\n\n' + base64.encodebytes(data))


def test_tnef_winmail_dat_is_unpacked_and_kept():
    tnef = make_tnef([(b'hello.txt', b'Hello from Outlook\n'), (b'report.pdf', b'%PDF-1.4 fake')])
    mail = parse_message(with_parts(tnef_part(tnef)))
    assert [(a.filename, a.content_type) for a in mail.attachments] == [
        ('winmail.dat', 'application/ms-tnef'), ('hello.txt', 'text/plain'), ('report.pdf', 'application/pdf')]
    assert mail.attachments[0].data == tnef
    assert mail.attachments[1].data == b'Hello from Outlook\n'
    assert mail.attachments[2].sha256 == hashlib.sha256(b'%PDF-1.4 fake').hexdigest()


def test_winmail_dat_named_only_by_file_name_is_unpacked():
    tnef = make_tnef([(b'notes.txt', b'notes')])
    assert names(with_parts(tnef_part(tnef, b'application/octet-stream'))) == ['winmail.dat', 'notes.txt']


def test_broken_winmail_dat_is_kept_with_a_defect_and_no_crash():
    mail = parse_message(with_parts(tnef_part(b'this is not TNEF at all')))
    assert [a.filename for a in mail.attachments] == ['winmail.dat']
    assert mail.attachments[0].data == b'this is not TNEF at all'
    assert any('TNEF' in d for d in mail.defects)


def test_truncated_winmail_dat_is_kept_with_a_defect_and_no_empty_file():
    tnef = make_tnef([(b'hello.txt', b'Hello from Outlook\n')])[:40]
    mail = parse_message(with_parts(tnef_part(tnef)))
    assert [a.filename for a in mail.attachments] == ['winmail.dat']
    assert any('TNEF' in d for d in mail.defects)
