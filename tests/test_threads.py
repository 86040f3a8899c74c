"""The threading decision without a database: the rules in their order, with what the store would know passed in
as lookups (see `ticketing.threads`)."""
from __future__ import annotations

from ingest import parse_message
from mails import MAILBOX, make_bounce, make_message
from ticketing.model import TicketFacts
from ticketing.threads import Lookups, decide, normalize_message_id, storage_message_id, ticket_reference

TOKEN = '0123456789abcdef0123456789abcdef'
CUSTOMER = 'anna@customer.example'


def facts(ticket_id=7, mailbox_id=1, status='active', participants=(CUSTOMER,)) -> TicketFacts:
    return TicketFacts(ticket_id, mailbox_id, status, frozenset(participants), TOKEN)


def lookups(messages=None, tickets=None, agents=()) -> Lookups:
    messages = messages or {}
    tickets = {t.ticket_id: t for t in (tickets or [facts()])}
    return Lookups(ticket_of_message=messages.get, ticket=tickets.get, is_agent=lambda a: a in agents)


def parsed(**changes):
    return parse_message(make_message(**changes))


def test_in_reply_to_a_stored_message_follows_up_on_its_ticket():
    decision = decide(parsed(in_reply_to='<q1@customer.example>'), 1, 'reopen',
                      lookups({'q1@customer.example': 7}))
    assert (decision.rule, decision.ticket_id, decision.reopen) == ('in-reply-to', 7, False)


def test_references_are_tried_right_to_left():
    decision = decide(parsed(references='<old@x> <q1@customer.example>'), 1, 'reopen',
                      lookups({'old@x': 3, 'q1@customer.example': 7}, [facts(3), facts(7)]))
    assert (decision.rule, decision.ticket_id) == ('references', 7)


def test_the_fixed_ticket_reference_needs_the_right_token_and_mailbox():
    good = '<%s>' % ticket_reference(7, TOKEN, 'helpdesk.example')
    assert decide(parsed(references=good), 1, 'reopen', lookups()).ticket_id == 7
    forged = '<%s>' % ticket_reference(7, 'f' * 32, 'helpdesk.example')
    assert decide(parsed(references=forged), 1, 'reopen', lookups()).rule == 'new'
    assert decide(parsed(references=good), 2, 'reopen', lookups()).rule == 'new'


def test_a_subject_reference_from_a_participant_follows_up():
    decision = decide(parsed(subject='Re: [ref#: 7-9] Order 1001'), 1, 'reopen', lookups())
    assert (decision.rule, decision.ticket_id) == ('subject-ref', 7)


def test_a_subject_reference_from_a_stranger_opens_a_connected_ticket():
    decision = decide(parsed(subject='[ref#: 7-9] hello', sender='eve@elsewhere.example'), 1, 'reopen', lookups())
    assert (decision.rule, decision.ticket_id, decision.connect_id) == ('new', None, 7)


def test_an_agent_may_continue_any_ticket_by_its_subject_reference():
    decision = decide(parsed(subject='[ref#: 7-9] hello', sender='bob@helpdesk.example'), 1, 'reopen',
                      lookups(agents={'bob@helpdesk.example'}))
    assert (decision.rule, decision.ticket_id) == ('subject-ref', 7)


def test_a_follow_up_on_a_closed_ticket_reopens_it_or_opens_a_connected_one():
    closed = [facts(status='closed')]
    reply = parsed(in_reply_to='<q1@customer.example>')
    reopened = decide(reply, 1, 'reopen', lookups({'q1@customer.example': 7}, closed))
    assert (reopened.ticket_id, reopened.reopen) == (7, True)
    separate = decide(reply, 1, 'new-ticket', lookups({'q1@customer.example': 7}, closed))
    assert (separate.ticket_id, separate.connect_id) == (None, 7)


def test_an_auto_reply_never_reopens_a_ticket():
    reply = parsed(in_reply_to='<q1@customer.example>', headers={'Auto-Submitted': 'auto-replied'})
    decision = decide(reply, 1, 'reopen', lookups({'q1@customer.example': 7}, [facts(status='closed')]))
    assert (decision.ticket_id, decision.reopen) == (7, False)


def test_a_bounce_threads_onto_the_ticket_of_the_message_it_reports_and_never_opens_one():
    bounce = parse_message(make_bounce('reply-1@helpdesk.example', to=MAILBOX))
    known = decide(bounce, 1, 'reopen', lookups({'reply-1@helpdesk.example': 7}))
    assert (known.rule, known.ticket_id) == ('bounce', 7)
    unknown = decide(bounce, 1, 'reopen', lookups())
    assert unknown.ticket_id is None and 'did not send' in unknown.quarantine


def test_anything_else_opens_a_new_ticket():
    decision = decide(parsed(subject='A new question'), 1, 'reopen', lookups())
    assert (decision.rule, decision.ticket_id, decision.connect_id) == ('new', None, None)


def test_a_message_without_message_id_is_stored_under_one_derived_from_its_bytes():
    message = parsed(message_id=None)
    assert storage_message_id(message, b'\x01' * 32) == '01' * 32 + '@sha256.postdesk.invalid'


def test_an_overlong_message_id_is_stored_by_its_digest():
    stored = normalize_message_id('x' * 300 + '@example.org')
    assert stored.startswith('sha256:') and len(stored) == 71
    assert normalize_message_id(' short@example.org ') == 'short@example.org'
