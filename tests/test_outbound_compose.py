"""The outbound compose stage: subject references, the quoted original, final HTML and plain text, threading
headers, the MIME message and its round trip through our own parser (seed 000, RFC 5322, 2045-2047, 2231, 2387).
No database: these tests need nothing but the code.
"""
from __future__ import annotations

import base64
import dataclasses
import datetime
import email.parser
import email.policy
import hashlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest import parse_message
from ingest.sanitize import html_to_text, sanitize_html, strip_tags
from outbound.compose import (ComposeError, HtmlPolicy, InvalidAddress, InvalidHeader, OutgoingAttachment, Party, Quoted,
                              ReplyDraft, compose_reply, filetime, format_quote_date, is_own_message_id,
                              new_message_id, own_message_ref)
from outbound.refs import SubjectRef

UTC = datetime.timezone.utc
CDT = datetime.timezone(datetime.timedelta(hours=-5))
QUESTION = ('I want to buy a HP laptop charger but I prefer paying after the item is delivered to me. '
            'Do you accept payment on delivery?')
TICKET_REFERENCE = 'ticket-45553-0123456789abcdef0123456789abcdef@helpdesk.example'
HTML_POLICY = HtmlPolicy(sanitize=sanitize_html, to_text=html_to_text, strip_tags=strip_tags)
PNG = b'\x89PNG\r\n\x1a\n' + bytes(range(256)) * 4


def seed_question(**changes) -> Quoted:
    """Question 45553 of seed 000, from Larissa Ostapenko, 2021-10-28 20:31:22 UTC shown in UTC-5."""
    quoted = Quoted(date=datetime.datetime(2021, 10, 28, 15, 31, 22, tzinfo=CDT), name='Larissa Ostapenko',
                    email='customer9@1to1service.com', html=QUESTION, text=QUESTION + '\r\n',
                    message_id='question-45553@1to1service.com')
    return dataclasses.replace(quoted, **changes)


def seed_draft(**changes) -> ReplyDraft:
    """Interaction 45596 of seed 000: the agent answers question 45553 and leaves it open."""
    draft = ReplyDraft(ticket_id=45553, interaction_id=45596, subject='Do you accept payment on delivery?',
                       body_html='&nbsp;', sender=Party('e-shop Support', 'support@helpdesk.example'),
                       to=(Party('Larissa Ostapenko', 'customer9@1to1service.com'),),
                       message_id='postdesk.45553.45596.0f1e2d3c4b5a@helpdesk.example',
                       ticket_reference=TICKET_REFERENCE,
                       date=datetime.datetime(2021, 11, 17, 11, 7, 25, tzinfo=UTC), quoted=seed_question(),
                       html_policy=HTML_POLICY)
    return dataclasses.replace(draft, **changes)


def header_block(data: bytes) -> str:
    return data.split(b'\r\n\r\n', 1)[0].decode('ascii')


def header_lines(data: bytes) -> list[str]:
    """The top-level header fields, unfolded."""
    return re.sub(r'\r\n[ \t]', ' ', header_block(data)).split('\r\n')


def header(data: bytes, name: str) -> list[str]:
    prefix = name.lower() + ':'
    return [line.split(':', 1)[1].strip() for line in header_lines(data) if line.lower().startswith(prefix)]


def mime_tree(data: bytes) -> list:
    """The content types as a nested list: ['multipart/mixed', ['multipart/alternative', 'text/plain', ...], ...]."""
    def tree(part):
        if part.is_multipart():
            return [part.get_content_type()] + [tree(child) for child in part.get_payload()]
        return part.get_content_type()
    return tree(email.parser.BytesParser(policy=email.policy.compat32).parsebytes(data))


def thread_index_bytes(data: bytes) -> bytes:
    return base64.b64decode(header(data, 'Thread-Index')[0])


# ------------------------------------------------------------------------------------------ seed 000

@pytest.mark.parametrize('stored_html', [QUESTION, None], ids=['question-html', 'question-text-only'])
def test_seed_example_45553_answered_leaving_it_open(stored_html):
    reply = compose_reply(seed_draft(quoted=seed_question(html=stored_html)))

    assert reply.subject == 'Re: [ref#: 45553-45596] Do you accept payment on delivery?'
    assert reply.subject_ref == 'Re: [ref#: 45553-45596]'
    assert reply.subject_bare == 'Do you accept payment on delivery?'
    assert reply.final_html == (
        '&nbsp;\n<div>On 10/28/2021 3:31:22 PM, Larissa Ostapenko &lt;customer9@1to1service.com&gt; wrote:'
        '<blockquote style="border-left: 1px solid #cccccc; margin: 0pt 0pt 0pt 0.8ex; padding-left: 1ex;">'
        + QUESTION + '</blockquote></div>')
    assert reply.final_plain == (
        'On 10/28/2021 3:31:22 PM, Larissa Ostapenko <customer9@1to1service.com> wrote:\n'
        '> I want to buy a HP laptop charger but I prefer paying after the item is delivered to me. '
        'Do you accept payment on delivery?\n')
    assert header(reply.data, 'Subject') == ['Re: [ref#: 45553-45596] Do you accept payment on delivery?']


def test_seed_reply_without_subject_reference_when_add_subject_ref_is_false():
    reply = compose_reply(seed_draft(subject='Re: [ref#: 45553-45553] Do you accept payment on delivery?',
                                     add_subject_ref=False))
    assert reply.subject == 'Re: Do you accept payment on delivery?'
    assert reply.subject_ref == 'Re:'
    assert header(reply.data, 'Subject') == ['Re: Do you accept payment on delivery?']


# --------------------------------------------------------------------------------------------- subject

@pytest.mark.parametrize('subject', [
    'Do you accept payment on delivery?',
    'Re: Do you accept payment on delivery?',
    'RE: Re: re: Do you accept payment on delivery?',
    'RE[2]: Do you accept payment on delivery?',
    'AW: SV: VS: Fwd: Fw: Do you accept payment on delivery?',
    'Re: [ref#: 45553-45553] Do you accept payment on delivery?',
    'RE[2]: Fwd: [ref#: 45553-45590] AW: [REF# 45553-45591] SV:VS: Do you accept payment on delivery?',
    'Fw:RE:[ref#:45553-45553]Re[3]: Do you accept payment on delivery?',
    '[ref#: 1-2] Re: Do you accept payment on delivery? [ref#: 45553-45553]',
    '  Re:   Do you   accept payment on delivery?  ',
    'R: I: Do you accept payment on delivery?',                 # Italian Outlook
    'YNT: VB: Antw: Do you accept payment on delivery?',        # Turkish, Swedish, Dutch
])
def test_subject_with_stacked_prefixes_and_old_reference_gets_one_tag(subject):
    reply = compose_reply(seed_draft(subject=subject))
    assert reply.subject == 'Re: [ref#: 45553-45596] Do you accept payment on delivery?'
    assert reply.subject_bare == 'Do you accept payment on delivery?'
    assert reply.subject.count('[ref#') == 1 and reply.subject.lower().count('re:') == 1
    unreferenced = compose_reply(seed_draft(subject=subject, add_subject_ref=False))
    assert unreferenced.subject == 'Re: Do you accept payment on delivery?'


@pytest.mark.parametrize('subject', ['', '   ', 'Re:', 'RE[2]: [ref#: 45553-45553]'])
def test_empty_subject_becomes_no_subject(subject):
    reply = compose_reply(seed_draft(subject=subject))
    assert reply.subject == 'Re: [ref#: 45553-45596] (no subject)'
    assert reply.subject_bare == '(no subject)'


def test_thread_topic_is_the_bare_subject():
    reply = compose_reply(seed_draft(subject='AW: RE[2]: [ref#: 45553-45553] Lieferung an die Bäckerei'))
    assert reply.subject_bare == 'Lieferung an die Bäckerei'
    assert 'Thread-Topic: Lieferung an die =?utf-8?b?' in header_block(reply.data)
    assert parse_message(reply.data).header('Thread-Topic').startswith('Lieferung an die =?utf-8?b?')


# -------------------------------------------------------------------------------- quoting and final text

@pytest.mark.parametrize('moment, shown', [
    (datetime.datetime(2021, 10, 28, 15, 31, 22, tzinfo=CDT), '10/28/2021 3:31:22 PM'),
    (datetime.datetime(2022, 1, 2, 0, 5, 9, tzinfo=UTC), '1/2/2022 12:05:09 AM'),
    (datetime.datetime(2022, 12, 31, 12, 0, 0, tzinfo=UTC), '12/31/2022 12:00:00 PM'),
    (datetime.datetime(2022, 7, 4, 9, 8, 7, tzinfo=UTC), '7/4/2022 9:08:07 AM'),
])
def test_quote_date_is_month_day_year_on_a_twelve_hour_clock(moment, shown):
    assert format_quote_date(moment) == shown


def test_quote_date_is_shown_in_the_timezone_it_is_given():
    moment = datetime.datetime(2021, 10, 28, 20, 31, 22, tzinfo=UTC)
    in_utc = compose_reply(seed_draft(quoted=seed_question(date=moment)))
    in_cdt = compose_reply(seed_draft(quoted=seed_question(date=moment.astimezone(CDT))))
    assert in_utc.final_plain.startswith('On 10/28/2021 8:31:22 PM, ')
    assert in_cdt.final_plain.startswith('On 10/28/2021 3:31:22 PM, ')


def test_attribution_escapes_name_and_email():
    reply = compose_reply(seed_draft(quoted=seed_question(name='Tom & <Jerry>', email='tom&jerry@example.org')))
    assert '<div>On 10/28/2021 3:31:22 PM, Tom &amp; &lt;Jerry&gt; &lt;tom&amp;jerry@example.org&gt; wrote:' \
        in reply.final_html
    assert reply.final_plain.startswith('On 10/28/2021 3:31:22 PM, Tom & <Jerry> <tom&jerry@example.org> wrote:\n')


def test_attribution_without_a_name_shows_only_the_email():
    reply = compose_reply(seed_draft(quoted=seed_question(name='')))
    assert '<div>On 10/28/2021 3:31:22 PM, customer9@1to1service.com wrote:<blockquote' in reply.final_html
    assert reply.final_plain.startswith('On 10/28/2021 3:31:22 PM, customer9@1to1service.com wrote:\n> I want')


def test_attribution_with_newlines_in_the_name_stays_on_one_line():
    reply = compose_reply(seed_draft(quoted=seed_question(name='Larissa\r\nOstapenko')))
    assert reply.final_plain.startswith('On 10/28/2021 3:31:22 PM, Larissa Ostapenko <customer9@')


def test_quoted_text_without_html_is_escaped_with_line_breaks_kept():
    text = 'Is 2 < 3 & "yes"?\r\nSecond line\r\n\r\n<script>alert(1)</script>\r\n'
    reply = compose_reply(seed_draft(quoted=seed_question(html=None, text=text)))
    assert ('padding-left: 1ex;">Is 2 &lt; 3 &amp; "yes"?<br>Second line<br><br>'
            '&lt;script&gt;alert(1)&lt;/script&gt;</blockquote></div>') in reply.final_html
    assert reply.final_plain.endswith(' wrote:\n> Is 2 < 3 & "yes"?\n> Second line\n>\n'
                                      '> <script>alert(1)</script>\n')


def test_quoted_html_is_sanitised_again():
    stored = '<p onclick="steal()">Where is <b>my order</b>?</p><script>alert(1)</script><p>Thanks</p>'
    reply = compose_reply(seed_draft(quoted=seed_question(html=stored)))
    assert '<blockquote style="border-left: 1px solid #cccccc; margin: 0pt 0pt 0pt 0.8ex; padding-left: 1ex;">' \
           '<p>Where is <b>my order</b>?</p><p>Thanks</p></blockquote></div>' in reply.final_html
    assert 'script' not in reply.final_html and 'onclick' not in reply.final_html
    assert reply.final_plain.endswith(' wrote:\n> Where is my order?\n>\n> Thanks\n')


def test_quoted_message_that_quotes_another_keeps_both_levels():
    stored = '<p>Still waiting.</p><blockquote><p>Your parcel left on Monday.</p></blockquote>'
    reply = compose_reply(seed_draft(quoted=seed_question(html=stored)))
    assert reply.final_plain.endswith(' wrote:\n> Still waiting.\n>\n> > Your parcel left on Monday.\n')


def test_agent_html_is_sanitised_but_its_remote_images_still_load():
    body = ('<p onmouseover="x()">Here is the <a href="javascript:evil()">label</a>:</p>'
            '<img src="https://cdn.helpdesk.example/label.png" alt="label"><script>alert(1)</script>'
            '<img src="cid:logo@helpdesk.example">')
    reply = compose_reply(seed_draft(body_html=body))
    assert reply.final_html.startswith('<p>Here is the <a rel="noopener noreferrer">label</a>:</p>'
                                       '<img src="https://cdn.helpdesk.example/label.png" alt="label">'
                                       '<img src="cid:logo@helpdesk.example">\n<div>On ')
    assert 'javascript' not in reply.final_html and 'script' not in reply.final_html


def test_sanitize_html_defers_remote_images_unless_told_not_to():
    html = '<img src="https://cdn.example/a.png"><img src="cid:x@y">'
    assert sanitize_html(html) == '<img data-src="https://cdn.example/a.png"><img src="cid:x@y">'
    assert sanitize_html(html, defer_images=False) == html


def test_agent_text_comes_before_the_quote_in_the_plain_text():
    reply = compose_reply(seed_draft(body_html='<p>Yes, we do.</p><p>Kind regards,<br>Niraj</p>'))
    assert reply.final_plain == (
        'Yes, we do.\n\nKind regards,\nNiraj\n\n'
        'On 10/28/2021 3:31:22 PM, Larissa Ostapenko <customer9@1to1service.com> wrote:\n> ' + QUESTION + '\n')
    assert reply.final_html.startswith('<p>Yes, we do.</p><p>Kind regards,<br>Niraj</p>\n<div>On 10/28/2021')


@pytest.mark.parametrize('body', ['', '   ', '&nbsp;', ' &nbsp;\n<br> &nbsp; ', '<p>&nbsp;</p>'])
def test_body_of_only_white_space_contributes_nothing_to_the_plain_text(body):
    reply = compose_reply(seed_draft(body_html=body))
    assert reply.final_plain.startswith('On 10/28/2021 3:31:22 PM, Larissa Ostapenko')


def test_reply_without_quote_is_the_agent_html_and_its_text():
    reply = compose_reply(seed_draft(quoted=None, body_html='<p>Your parcel is on its way.</p>'))
    assert reply.final_html == '<p>Your parcel is on its way.</p>'
    assert reply.final_plain == 'Your parcel is on its way.\n'
    assert reply.in_reply_to is None and not header(reply.data, 'In-Reply-To')
    assert reply.references == (TICKET_REFERENCE,)


# ---------------------------------------------------------------------------------------------- threading

def test_references_are_ticket_reference_then_quoted_references_then_quoted_message_id():
    quoted = seed_question(message_id='<q3@mail.example>', references=('<q1@mail.example>', TICKET_REFERENCE,
                                                                       'q2@mail.example', 'q1@mail.example'))
    reply = compose_reply(seed_draft(quoted=quoted))
    assert reply.references == (TICKET_REFERENCE, 'q1@mail.example', 'q2@mail.example', 'q3@mail.example')
    assert reply.in_reply_to == 'q3@mail.example'
    assert header(reply.data, 'In-Reply-To') == ['<q3@mail.example>']
    assert header(reply.data, 'References') == [
        '<%s> <q1@mail.example> <q2@mail.example> <q3@mail.example>' % TICKET_REFERENCE]


def test_more_than_ten_references_keep_the_first_four_and_the_last_six():
    older = tuple('m%02d@mail.example' % i for i in range(1, 15))
    reply = compose_reply(seed_draft(quoted=seed_question(message_id='q@mail.example', references=older)))
    assert reply.references == (TICKET_REFERENCE, 'm01@mail.example', 'm02@mail.example', 'm03@mail.example',
                                'm10@mail.example', 'm11@mail.example', 'm12@mail.example', 'm13@mail.example',
                                'm14@mail.example', 'q@mail.example')
    assert len(reply.references) == 10
    assert parse_message(reply.data).references == reply.references


def test_message_id_header_has_brackets_and_the_result_does_not():
    reply = compose_reply(seed_draft(message_id='<postdesk.45553.45596.0f1e2d3c4b5a@helpdesk.example>'))
    assert reply.message_id == 'postdesk.45553.45596.0f1e2d3c4b5a@helpdesk.example'
    assert header(reply.data, 'Message-ID') == ['<postdesk.45553.45596.0f1e2d3c4b5a@helpdesk.example>']


def test_new_message_id_names_ticket_and_interaction_and_is_recognised_as_ours():
    first = new_message_id(45553, 45596, 'helpdesk.example')
    assert re.fullmatch(r'postdesk\.45553\.45596\.[0-9a-f]{12}@helpdesk\.example', first)
    assert first != new_message_id(45553, 45596, 'helpdesk.example')
    assert is_own_message_id(first) and is_own_message_id('<%s>' % first)
    assert own_message_ref('<%s>' % first) == SubjectRef(45553, 45596)
    for other in ('CAF=x1y2z3@mail.gmail.com', 'postdesk.1.2@helpdesk.example', 'postdesk.a.2.0123456789ab@x',
                  'xpostdesk.1.2.0123456789ab@x', '', None, TICKET_REFERENCE):
        assert not is_own_message_id(other)
    with pytest.raises(ComposeError):
        new_message_id(1, 2, 'not a domain')


def test_thread_index_follows_the_conversation_index_layout():
    started = datetime.datetime(2021, 10, 28, 20, 31, 22, tzinfo=UTC)
    replied = started + datetime.timedelta(days=19, hours=14, minutes=36, seconds=3)
    block = thread_index_bytes(compose_reply(seed_draft(thread_started=started, date=replied)).data)
    assert len(block) == 27                                    # 22-byte header block + one 5-byte child block
    assert block[0] == 0x01
    assert block[1:6] == (filetime(started) >> 24).to_bytes(5, 'big')
    assert block[6:22] == hashlib.md5(TICKET_REFERENCE.encode()).digest()
    code = int.from_bytes(block[22:26], 'big')
    assert code >> 31 == 0                                     # delta code 0: under 1.7 years
    header_time = (filetime(started) >> 24) << 24
    assert abs(((code & 0x7FFFFFFF) << 18) - (filetime(replied) - header_time)) < 1 << 18


def test_thread_index_of_a_reply_years_later_uses_delta_code_one():
    started = datetime.datetime(2019, 1, 1, tzinfo=UTC)
    replied = datetime.datetime(2023, 6, 1, tzinfo=UTC)
    block = thread_index_bytes(compose_reply(seed_draft(thread_started=started, date=replied)).data)
    code = int.from_bytes(block[22:26], 'big')
    assert code >> 31 == 1
    header_time = (filetime(started) >> 24) << 24
    assert abs(((code & 0x7FFFFFFF) << 23) - (filetime(replied) - header_time)) < 1 << 23


def test_replies_on_the_same_ticket_share_the_thread_index_header_block():
    started = datetime.datetime(2021, 10, 28, 20, 31, 22, tzinfo=UTC)
    first = compose_reply(seed_draft(thread_started=started, date=started + datetime.timedelta(hours=2)))
    second = compose_reply(seed_draft(thread_started=started, interaction_id=45600,
                                      message_id='postdesk.45553.45600.aaaaaaaaaaaa@helpdesk.example',
                                      date=started + datetime.timedelta(days=3)))
    other_ticket = compose_reply(seed_draft(thread_started=started,
                                            ticket_reference='ticket-7-ffffffffffffffffffffffffffffffff@x.example'))
    assert thread_index_bytes(first.data)[:22] == thread_index_bytes(second.data)[:22]
    assert thread_index_bytes(first.data)[22:] != thread_index_bytes(second.data)[22:]
    assert thread_index_bytes(first.data)[6:22] != thread_index_bytes(other_ticket.data)[6:22]


def test_thread_index_starts_at_the_reply_date_without_thread_started():
    reply = compose_reply(seed_draft(thread_started=None))
    assert thread_index_bytes(reply.data)[1:6] == (filetime(seed_draft().date) >> 24).to_bytes(5, 'big')


# ---------------------------------------------------------------------------------- addresses and headers

def test_headers_name_sender_recipients_and_date_and_never_bcc():
    reply = compose_reply(seed_draft(
        to=(Party('Larissa Ostapenko', 'customer9@1to1service.com'), Party('', 'orders@1to1service.com')),
        cc=(Party('Accounts, North', 'accounts@1to1service.com'), Party('', 'CUSTOMER9@1to1service.com')),
        bcc=(Party('Supervisor', 'supervisor@helpdesk.example'), Party('', 'orders@1to1service.com'))))
    assert header(reply.data, 'From') == ['e-shop Support <support@helpdesk.example>']
    assert header(reply.data, 'To') == ['Larissa Ostapenko <customer9@1to1service.com>, orders@1to1service.com']
    assert header(reply.data, 'Cc') == ['"Accounts, North" <accounts@1to1service.com>, CUSTOMER9@1to1service.com']
    assert header(reply.data, 'Date') == ['Wed, 17 Nov 2021 11:07:25 +0000']
    assert header(reply.data, 'MIME-Version') == ['1.0']
    assert not header(reply.data, 'Bcc') and b'supervisor' not in reply.data
    assert reply.mail_from == 'support@helpdesk.example'
    assert reply.recipients == ('customer9@1to1service.com', 'orders@1to1service.com',
                                'accounts@1to1service.com', 'supervisor@helpdesk.example')


def test_date_header_keeps_the_offset_it_is_given():
    reply = compose_reply(seed_draft(date=datetime.datetime(2021, 11, 17, 6, 7, 25, tzinfo=CDT)))
    assert header(reply.data, 'Date') == ['Wed, 17 Nov 2021 06:07:25 -0500']


def test_extra_headers_are_added_as_given():
    reply = compose_reply(seed_draft(extra_headers=(('Auto-Submitted', 'auto-replied'),
                                                    ('X-Auto-Response-Suppress', 'All'))))
    assert header(reply.data, 'Auto-Submitted') == ['auto-replied']
    assert header(reply.data, 'X-Auto-Response-Suppress') == ['All']
    assert parse_message(reply.data).auto_submitted is not None


@pytest.mark.parametrize('name', ['Bcc', 'subject', 'Message-ID', 'Content-Type', 'X-Bad Name', 'X-A:B', ''])
def test_extra_header_that_compose_writes_itself_or_that_is_no_field_name_is_refused(name):
    with pytest.raises(InvalidHeader):
        compose_reply(seed_draft(extra_headers=((name, 'x'),)))


def test_line_breaks_in_header_input_cannot_inject_headers():
    reply = compose_reply(seed_draft(
        subject='Payment\r\nBcc: victim@evil.example\r\n\r\n<html>',
        sender=Party('Support\r\nBcc: victim@evil.example', 'support@helpdesk.example'),
        to=(Party('Larissa\nX-Injected: 1', 'customer9@1to1service.com\r\n'),),
        extra_headers=(('X-Note', 'a\r\nBcc: victim@evil.example\nX-Injected: 2'),),
        quoted=seed_question(message_id='q@mail.example>\r\nBcc: <victim@evil.example',
                             references=('r@x\r\nX-Injected: 3',))))
    names = [line.split(':', 1)[0].lower() for line in header_lines(reply.data)]
    assert 'bcc' not in names and 'x-injected' not in names
    assert reply.subject == 'Re: [ref#: 45553-45596] Payment Bcc: victim@evil.example <html>'
    assert header(reply.data, 'Subject') == [reply.subject]
    assert header(reply.data, 'X-Note') == ['a Bcc: victim@evil.example X-Injected: 2']
    assert reply.recipients == ('customer9@1to1service.com',)
    for line in reply.data.split(b'\r\n'):
        assert b'\r' not in line and b'\n' not in line


@pytest.mark.parametrize('address', ['not-an-address', 'a@b@c', 'Larissa <customer9@1to1service.com>',
                                     'a b@example.org', 'a@example.org, b@example.org', 'jörg@example.de', ''])
def test_invalid_recipient_address_is_refused(address):
    with pytest.raises(InvalidAddress):
        compose_reply(seed_draft(to=(Party('Someone', address),)))


def test_reply_without_any_recipient_is_refused():
    with pytest.raises(ComposeError):
        compose_reply(seed_draft(to=()))


def test_internationalised_domain_is_written_in_idna_form():
    reply = compose_reply(seed_draft(to=(Party('Jörg', 'joerg@bäckerei.example'),)))
    assert reply.recipients == ('joerg@xn--bckerei-5wa.example',)
    assert parse_message(reply.data).to[0].email == 'joerg@xn--bckerei-5wa.example'


def test_non_ascii_subject_and_display_names_are_encoded_words():
    reply = compose_reply(seed_draft(subject='Zahlung bei Lieferung möglich? 配達時の支払い',
                                     sender=Party('Kundendienst Müller & Söhne', 'support@helpdesk.example'),
                                     to=(Party('Лариса Остапенко', 'customer9@1to1service.com'),)))
    head = header_block(reply.data)
    assert head.isascii()
    assert header(reply.data, 'Subject')[0].startswith('Re: [ref#: 45553-45596] Zahlung bei Lieferung =?utf-8?b?')
    assert header(reply.data, 'From')[0].startswith('=?utf-8?b?')
    assert header(reply.data, 'To')[0].startswith('=?utf-8?b?')
    parsed = parse_message(reply.data)
    assert parsed.subject == 'Re: [ref#: 45553-45596] Zahlung bei Lieferung möglich? 配達時の支払い'
    assert (parsed.from_.name, parsed.from_.email) == ('Kundendienst Müller & Söhne', 'support@helpdesk.example')
    assert (parsed.to[0].name, parsed.to[0].email) == ('Лариса Остапенко', 'customer9@1to1service.com')


def test_long_headers_are_folded_and_no_line_passes_998_octets():
    many = tuple(Party('Recipient Number %d' % i, 'recipient%d@1to1service.com' % i) for i in range(40))
    reply = compose_reply(seed_draft(
        to=many, subject='A ' * 200 + 'x' * 1500 + ' Déjà vu ' * 30,
        body_html='<p>' + 'y' * 5000 + '</p>',
        attachments=(OutgoingAttachment('z' * 200 + '.txt', 'text/plain', b'z'),)))
    for line in header_block(reply.data).split('\r\n'):
        assert len(line) <= 78 or ' ' not in line.strip()
    for line in reply.data.split(b'\r\n'):
        assert len(line) <= 998
    parsed = parse_message(reply.data)
    assert parsed.subject == reply.subject
    assert [(a.name, a.email) for a in parsed.to] == [(p.name, p.email) for p in many]
    assert parsed.attachments[0].filename == 'z' * 200 + '.txt'


# -------------------------------------------------------------------------------------------------- MIME

def test_reply_without_attachments_is_a_bare_multipart_alternative_plain_first():
    reply = compose_reply(seed_draft())
    assert mime_tree(reply.data) == ['multipart/alternative', 'text/plain', 'text/html']
    body = reply.data.split(b'\r\n\r\n', 1)[1]
    assert body.index(b'Content-Type: text/plain; charset="utf-8"') < body.index(b'Content-Type: text/html')


def test_inline_image_wraps_the_alternative_in_multipart_related():
    logo = OutgoingAttachment('logo.png', 'image/png', PNG, content_id='logo@helpdesk.example')
    reply = compose_reply(seed_draft(body_html='<img src="cid:logo@helpdesk.example">', attachments=(logo,)))
    assert mime_tree(reply.data) == ['multipart/related', ['multipart/alternative', 'text/plain', 'text/html'],
                                     'image/png']
    assert 'type="multipart/alternative"' in header(reply.data, 'Content-Type')[0]
    assert b'Content-ID: <logo@helpdesk.example>' in reply.data
    assert b'Content-Disposition: inline; filename="logo.png"' in reply.data


def test_attached_file_wraps_the_alternative_in_multipart_mixed():
    invoice = OutgoingAttachment('invoice.pdf', 'application/pdf', b'%PDF-1.4\n' + bytes(300))
    reply = compose_reply(seed_draft(attachments=(invoice,)))
    assert mime_tree(reply.data) == ['multipart/mixed', ['multipart/alternative', 'text/plain', 'text/html'],
                                     'application/pdf']


def test_inline_images_and_files_nest_related_inside_mixed():
    logo = OutgoingAttachment('logo.png', 'image/png', PNG, content_id='logo@helpdesk.example')
    invoice = OutgoingAttachment('invoice.pdf', 'application/pdf', b'%PDF-1.4\n')
    reply = compose_reply(seed_draft(attachments=(invoice, logo)))
    assert mime_tree(reply.data) == ['multipart/mixed',
                                     ['multipart/related', ['multipart/alternative', 'text/plain', 'text/html'],
                                      'image/png'],
                                     'application/pdf']


def test_mostly_ascii_text_is_quoted_printable_and_mostly_other_scripts_base64():
    english = compose_reply(seed_draft(body_html='<p>Your parcel is on its way, Jörg.</p>'))
    russian = compose_reply(seed_draft(body_html='<p>' + 'Ваша посылка уже в пути. ' * 40 + '</p>'))
    assert english.data.count(b'Content-Transfer-Encoding: quoted-printable') == 2
    assert b'Content-Transfer-Encoding: base64' in russian.data
    assert parse_message(russian.data).text.replace('\r\n', '\n') == russian.final_plain


def test_message_has_crlf_line_endings_only():
    reply = compose_reply(seed_draft(body_html='<p>one\nline\rtwo\r\nthree</p>' + '<p>long ' * 300,
                                     quoted=seed_question(html=None, text='a\rb\nc\r\nd')))
    assert b'\n' not in reply.data.replace(b'\r\n', b'')
    assert b'\r' not in reply.data.replace(b'\r\n', b'')


def test_the_same_draft_always_gives_the_same_bytes():
    logo = OutgoingAttachment('logo.png', 'image/png', PNG, content_id='logo@helpdesk.example')
    assert compose_reply(seed_draft(attachments=(logo,))).data == compose_reply(seed_draft(attachments=(logo,))).data


def test_round_trip_through_our_own_parser():
    logo = OutgoingAttachment('logo.png', 'image/png', PNG, content_id='logo@helpdesk.example')
    invoice = OutgoingAttachment('Rechnung Nr. 4711 für Bestellung vom 28. Oktober 2021 (Kopie).pdf',
                                 'application/pdf', b'%PDF-1.4\n' + bytes(range(256)) * 40)
    note = OutgoingAttachment('notes "v2".txt', 'text/plain', 'Grüße\r\n'.encode('utf-8'))
    quoted = seed_question(html='<p>Where is my <b>charger</b>?</p><p>Larissa</p>', message_id='q2@mail.example',
                           references=('postdesk.45553.45590.0123456789ab@helpdesk.example', 'q1@mail.example'))
    draft = seed_draft(
        subject='RE: AW: [ref#: 45553-45590] Wo ist mein Ladegerät?',
        body_html='<p>Hallo Larissa,</p><p>Ihr Paket ist unterwegs: <img src="cid:logo@helpdesk.example"></p>'
                  '<p>= 100 % sicher, Zeilen mit Punkt:</p><pre>.\nFrom here</pre>',
        sender=Party('Kundendienst Müller', 'support@helpdesk.example'),
        to=(Party('Larissa Ostapenko', 'customer9@1to1service.com'),),
        cc=(Party('Buchhaltung', 'accounts@1to1service.com'), Party('', 'orders@1to1service.com')),
        bcc=(Party('Supervisor', 'supervisor@helpdesk.example'),),
        quoted=quoted, attachments=(logo, invoice, note))
    reply = compose_reply(draft)
    parsed = parse_message(reply.data)

    assert parsed.subject == reply.subject == 'Re: [ref#: 45553-45596] Wo ist mein Ladegerät?'
    assert (parsed.from_.name, parsed.from_.email) == ('Kundendienst Müller', 'support@helpdesk.example')
    assert [(a.name, a.email) for a in parsed.to] == [('Larissa Ostapenko', 'customer9@1to1service.com')]
    assert [(a.name, a.email) for a in parsed.cc] == [('Buchhaltung', 'accounts@1to1service.com'),
                                                       ('', 'orders@1to1service.com')]
    assert parsed.text.replace('\r\n', '\n') == reply.final_plain
    assert parsed.html.replace('\r\n', '\n') == sanitize_html(reply.final_html)
    assert [(a.filename, a.content_type, a.sha256) for a in parsed.attachments] == [
        (x.filename, x.content_type, hashlib.sha256(x.data).hexdigest()) for x in (logo, invoice, note)]
    assert [(a.inline, a.content_id) for a in parsed.attachments] == [(True, 'logo@helpdesk.example'),
                                                                       (False, None), (False, None)]
    assert parsed.message_id == reply.message_id
    assert parsed.in_reply_to == (reply.in_reply_to,) == ('q2@mail.example',)
    assert parsed.references == reply.references == (
        TICKET_REFERENCE, 'postdesk.45553.45590.0123456789ab@helpdesk.example', 'q1@mail.example', 'q2@mail.example')
    assert parsed.date == draft.date
    assert not parsed.defects


_HEADER_TEXT = st.text(st.characters(codec='utf-8', exclude_categories=('Cs',)) | st.sampled_from('\r\n\t =?"<>,;\\'),
                       max_size=120)


@settings(max_examples=150, deadline=None, database=None, derandomize=True)
@given(subject=_HEADER_TEXT, name=_HEADER_TEXT, note=_HEADER_TEXT)
def test_any_header_text_stays_inside_its_header_and_comes_back(subject, name, note):
    reply = compose_reply(seed_draft(subject=subject, to=(Party(name, 'customer9@1to1service.com'),),
                                     extra_headers=(('X-Note', note),)))
    names = [line.split(':', 1)[0] for line in header_lines(reply.data)]
    assert names == ['Date', 'From', 'To', 'Subject', 'Message-ID', 'In-Reply-To', 'References', 'Thread-Topic',
                     'Thread-Index', 'X-Note', 'MIME-Version', 'Content-Type']
    assert reply.subject.count('[ref#') == 1
    for line in reply.data.split(b'\r\n'):
        assert len(line) <= 998
    parsed = parse_message(reply.data)
    assert parsed.subject == reply.subject
    assert parsed.to[0].email == 'customer9@1to1service.com'


@pytest.mark.parametrize('subject', ['[EXTERNAL] Re: Do you accept payment on delivery?',
                                     'Re: [EXTERNAL] RE: Do you accept payment on delivery?'])
def test_prefix_behind_a_gateway_tag_is_removed_and_the_tag_kept(subject):
    reply = compose_reply(seed_draft(subject=subject))
    assert reply.subject == 'Re: [ref#: 45553-45596] [EXTERNAL] Do you accept payment on delivery?'
