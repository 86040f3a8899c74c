"""Benchmark: replies per second composed by `outbound.compose.compose_reply`, next to the standard library
composing a bare multipart/alternative message of the same content (`email.message.EmailMessage`: set_content of
the plain text, add_alternative of the HTML, From/To/Subject/Date/Message-ID, then bytes()), measured in the same
run on one core, interleaved round by round, best round of each (target ratio >= 0.5).

usage: python bench/compose.py [--count 500] [--rounds 7] [--max-seconds 60]

The reply is realistic: a ~2 KB agent HTML body answering a ~2 KB customer message that is quoted in full, to one
recipient, with References and a subject reference. compose_reply does more than the baseline (sanitising both
HTML parts, html2text for the plain text, threading headers, Thread-Index): the baseline is handed the final
plain text and HTML ready-made. Loops are bounded in count and in time.
"""
from __future__ import annotations

import argparse
import datetime
import pathlib
import sys
import time
from email.message import EmailMessage
from email.utils import format_datetime

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingest.sanitize import html_to_text, sanitize_html, strip_tags  # noqa: E402
from outbound.compose import HtmlPolicy, Party, Quoted, ReplyDraft, compose_reply  # noqa: E402

_AGENT_PARAGRAPH = ('<p>Dear Larissa, thank you for your <b>order</b> #12345. We checked its status with our '
                    'warehouse: the parcel left on <i>Monday</i> and can be tracked '
                    '<a href="https://track.example/12345">here</a>.</p>\n')
_CUSTOMER_PARAGRAPH = ('<p>Hello, I ordered a HP laptop charger last week and it still has not arrived. Could you '
                       'please tell me where it is and when I can expect it?</p>\n')


def realistic_draft() -> ReplyDraft:
    """A reply of ~2 KB agent HTML quoting a ~2 KB customer message."""
    customer_html = _CUSTOMER_PARAGRAPH * 13 + '<p>Regards,<br>Larissa Ostapenko</p>'
    customer_time = datetime.timezone(datetime.timedelta(hours=-5))
    quoted = Quoted(date=datetime.datetime(2021, 10, 28, 15, 31, 22, tzinfo=customer_time),
                    name='Larissa Ostapenko', email='customer9@1to1service.com', html=customer_html,
                    text='', message_id='CAF=x1y2z3@mail.gmail.com',
                    references=('postdesk.45553.45590.0123456789ab@helpdesk.example',))
    return ReplyDraft(
        ticket_id=45553, interaction_id=45596, subject='RE: [ref#: 45553-45590] Where is my charger?',
        body_html=_AGENT_PARAGRAPH * 9 + '<p>Kind regards,<br>Niraj Raba<br>e-shop support</p>',
        sender=Party('e-shop Support', 'support@helpdesk.example'),
        to=(Party('Larissa Ostapenko', 'customer9@1to1service.com'),),
        message_id='postdesk.45553.45596.0f1e2d3c4b5a@helpdesk.example',
        ticket_reference='ticket-45553-0123456789abcdef0123456789abcdef@helpdesk.example',
        date=datetime.datetime(2021, 11, 17, 11, 7, 25, tzinfo=datetime.timezone.utc), quoted=quoted,
        html_policy=HtmlPolicy(sanitize=sanitize_html, to_text=html_to_text, strip_tags=strip_tags))


def stdlib_message(draft: ReplyDraft, subject: str, plain: str, final_html: str) -> bytes:
    message = EmailMessage()
    message['From'] = '%s <%s>' % (draft.sender.name, draft.sender.email)
    message['To'] = ', '.join('%s <%s>' % (p.name, p.email) for p in draft.to)
    message['Subject'] = subject
    message['Date'] = format_datetime(draft.date)
    message['Message-ID'] = '<%s>' % draft.message_id
    message.set_content(plain)
    message.add_alternative(final_html, subtype='html')
    return bytes(message)


def time_round(function, count: int, deadline: float) -> tuple[float, int]:
    """Seconds per call over at most `count` calls, stopping early at `deadline`."""
    start = time.perf_counter()
    done = 0
    while done < count:
        function()
        done += 1
        if done % 25 == 0 and time.perf_counter() > deadline:
            break
    return (time.perf_counter() - start) / done, done


def main() -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument('--count', type=int, default=500, help='calls per round (default 500)')
    args.add_argument('--rounds', type=int, default=7, help='interleaved rounds (default 7)')
    args.add_argument('--max-seconds', type=float, default=60.0, help='bound on the whole run (default 60)')
    opts = args.parse_args()
    draft = realistic_draft()
    reply = compose_reply(draft)
    per_round = opts.max_seconds / max(opts.rounds, 1) / 2
    ours, stdlib = [], []
    for _ in range(opts.rounds):
        stdlib.append(time_round(lambda: stdlib_message(draft, reply.subject, reply.final_plain, reply.final_html),
                                 opts.count, time.perf_counter() + per_round)[0])
        ours.append(time_round(lambda: compose_reply(draft), opts.count, time.perf_counter() + per_round)[0])
    best_stdlib, best_ours = min(stdlib), min(ours)
    print('reply:                          agent HTML %d chars, quoted HTML %d chars, message %d bytes'
          % (len(draft.body_html), len(draft.quoted.html), len(reply.data)))
    print('stdlib EmailMessage (bare alt): %8.0f msg/s' % (1 / best_stdlib))
    print('postdesk compose_reply:         %8.0f msg/s' % (1 / best_ours))
    print('ratio compose / stdlib:         %8.2f   (target >= 0.50; best of %d interleaved rounds)'
          % (best_stdlib / best_ours, opts.rounds))
    return 0


if __name__ == '__main__':
    sys.exit(main())
