"""`postdesk reply`: an agent answers a ticket (iService sendleaveopen, and send-and-close)."""
from __future__ import annotations

import html
import mimetypes
import os
import sys

from .command import EXIT_OK, UsageError, config_of, database, read_text, write_json


def add_parsers(commands) -> None:
    reply = commands.add_parser('reply', help='answer a ticket (iService sendleaveopen / send and close)')
    reply.add_argument('ticket_id', type=int, metavar='TICKET')
    body = reply.add_mutually_exclusive_group(required=True)
    body.add_argument('--html', metavar='FILE', help='the answer as HTML, from a file (- for standard input)')
    body.add_argument('--text', metavar='TEXT', help='the answer as plain text')
    reply.add_argument('--leave-open', action='store_true', help='send and leave the ticket open (default: close)')
    reply.add_argument('--expect-reply', action='store_true', help='the ticket stays open, waiting for the customer')
    reply.add_argument('--no-subject-ref', action='store_true', help='no [ref#: T-I] in the subject')
    reply.add_argument('--to', action='append', default=[], metavar='ADDRESS',
                       help="recipient (default: the ticket's customer); repeatable")
    reply.add_argument('--cc', action='append', default=[], metavar='ADDRESS', help='repeatable')
    reply.add_argument('--bcc', action='append', default=[], metavar='ADDRESS', help='repeatable')
    reply.add_argument('--attach', action='append', default=[], metavar='FILE', help='repeatable')
    reply.add_argument('--note', default='', help='a private note kept with the reply')
    reply.add_argument('--agent', default='postdesk', help='who answers (for the audit)')
    reply.add_argument('--in-response-to', type=int, metavar='INTERACTION',
                       help='the message answered (default: the latest customer message)')
    reply.add_argument('--json', action='store_true', help="print iService's response object")
    reply.set_defaults(handler=run_reply)


def answer_of(args):
    from ..model import Answer
    return Answer(ticket_id=args.ticket_id, body_html=answer_html(args), leave_open=args.leave_open,
                  expect_reply=args.expect_reply, supress_subject_ref=args.no_subject_ref,
                  dest_email=tuple(args.to), cc=tuple(args.cc), bcc=tuple(args.bcc),
                  attachments=tuple(attachment(path) for path in args.attach), note=args.note,
                  agent=args.agent, in_response_to=args.in_response_to)


def run_reply(args) -> int:
    from ..drafts import ReplyError
    from ..formats.iservice import error_object
    from ..operations.replies import send_reply
    config = config_of(args)
    try:
        result = send_reply(database(config), answer_of(args), config.timezone)
    except (ReplyError, UsageError) as exc:
        if args.json:
            write_json(error_object(str(exc)))
        raise UsageError(str(exc)) from exc
    if args.json:
        write_json(result)
    else:
        reply = result['response']
        sys.stdout.write('reply %s on ticket %d queued: %s\n  to: %s\n' % (
            reply['row']['id'], args.ticket_id, reply['row']['subject'], result['details']['toAddress']))
    return EXIT_OK


def answer_html(args) -> str:
    if args.text is not None:
        return '<div>%s</div>' % html.escape(args.text).replace('\n', '<br>\n')
    return sys.stdin.read() if args.html == '-' else read_text(args.html)


def attachment(path: str):
    from outbound.compose import OutgoingAttachment
    try:
        with open(path, 'rb') as handle:
            data = handle.read()
    except OSError as exc:
        raise UsageError('cannot read attachment %s: %s' % (path, exc.strerror)) from exc
    kind = mimetypes.guess_type(path)[0] or 'application/octet-stream'
    return OutgoingAttachment(os.path.basename(path), kind, data)
