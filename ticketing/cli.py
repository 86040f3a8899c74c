"""The `postdesk` command line: argument parsing and dispatch to the commands.

Exit status: 0 success; 1 when some input was not handled (a file that is not a message, a quarantined
message); 2 for usage errors (argparse's convention, unknown mailbox, missing path, bad configuration);
75 (EX_TEMPFAIL) when the database cannot be reached: nothing was lost, run it again later.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys

from ingest import NotAMessage, ParsedMail, error_json, parse_message

EXIT_OK, EXIT_INCOMPLETE, EXIT_USAGE, EXIT_TEMPFAIL = 0, 1, 2, 75


class UsageError(Exception):
    """Arguments that name something that does not exist (exit status 2)."""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, 'handler', None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(level=logging.INFO if getattr(args, 'verbose', False) else logging.WARNING,
                        format='%(levelname)s %(name)s: %(message)s')
    from .config import ConfigError
    from .db import DatabaseUnavailable
    try:
        return args.handler(args)
    except (UsageError, ConfigError) as exc:
        sys.stderr.write('postdesk: %s\n' % exc)
        return EXIT_USAGE
    except DatabaseUnavailable as exc:
        sys.stderr.write('postdesk: %s\n' % exc)
        return EXIT_TEMPFAIL
    except BrokenPipeError:
        return EXIT_INCOMPLETE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='postdesk', description='Email ingestion and ticketing pipeline.')
    parser.add_argument('--config', help='TOML configuration file (default: $POSTDESK_CONFIG)')
    parser.add_argument('-v', '--verbose', action='store_true', help='log what happens')
    commands = parser.add_subparsers(title='commands', metavar='COMMAND')

    parse = commands.add_parser('parse', help='show what postdesk sees in message files (no database)')
    parse.add_argument('--json', action='store_true', help='one JSON object per file per line')
    parse.add_argument('files', nargs='+', metavar='FILE')
    parse.set_defaults(handler=run_parse)

    initdb = commands.add_parser('initdb', help='create or upgrade the database schema')
    initdb.set_defaults(handler=run_initdb)

    replay = commands.add_parser('replay', help='store .eml files, folders, mbox files and Maildirs as tickets')
    replay.add_argument('--mailbox', metavar='ADDRESS', help='deliver every message to this mailbox')
    replay.add_argument('--json', action='store_true', help='one JSON object per message')
    replay.add_argument('paths', nargs='+', metavar='PATH')
    replay.set_defaults(handler=run_replay)

    mailbox = commands.add_parser('mailbox', help='mailboxes mail is delivered to').add_subparsers(metavar='ACTION')
    add = mailbox.add_parser('add', help='add a mailbox')
    add.add_argument('address')
    add.add_argument('--name', default='')
    add.add_argument('--category', default='')
    add.add_argument('--priority', default='Medium')
    add.add_argument('--follow-up', choices=('reopen', 'new-ticket'), default='reopen',
                     help='what a reply to a closed ticket does (default: reopen it)')
    add.add_argument('--default', action='store_true', help='deliver mail for no known mailbox here')
    add.add_argument('--catch-all', action='store_true',
                     help='serve: accept RCPT TO any address of this mailbox\'s domain')
    add.add_argument('--json', action='store_true')
    add.set_defaults(handler=run_mailbox_add)
    ack = mailbox.add_parser('ack', help='acknowledge each new ticket of a mailbox automatically (or stop)')
    ack.add_argument('address')
    which = ack.add_mutually_exclusive_group(required=True)
    which.add_argument('--template', metavar='FILE',
                       help='text or HTML with {ticket_id}, {ref}, {subject}, {name}, {mailbox_name}')
    which.add_argument('--default', action='store_true', help='the built-in template')
    which.add_argument('--off', action='store_true', help='no acknowledgements')
    ack.set_defaults(handler=run_mailbox_ack)
    listing = mailbox.add_parser('list', help='list mailboxes')
    listing.add_argument('--json', action='store_true')
    listing.set_defaults(handler=run_mailbox_list)

    ticket = commands.add_parser('ticket', help='read tickets').add_subparsers(metavar='ACTION')
    show = ticket.add_parser('show', help='one ticket as a TicketEntity')
    show.add_argument('ticket_id', type=int, metavar='ID')
    show.add_argument('--json', action='store_true')
    show.set_defaults(handler=run_ticket_show)
    tickets = ticket.add_parser('list', help='all tickets')
    tickets.add_argument('--json', action='store_true')
    tickets.set_defaults(handler=run_ticket_list)

    serve = commands.add_parser('serve', help='SMTP and LMTP intake, with intake workers')
    serve.add_argument('--smtp', metavar='HOST:PORT', help='SMTP listener ("off" for none; default from config)')
    serve.add_argument('--lmtp', metavar='HOST:PORT|unix:PATH', help='LMTP listener ("off" for none)')
    serve.add_argument('--workers', type=int, help='intake worker processes (default from config, 1)')
    serve.set_defaults(handler=run_serve)

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

    deliver = commands.add_parser('deliver', help='send queued replies to the SMTP relay')
    deliver.add_argument('--once', action='store_true', help='send what is due now and exit')
    deliver.add_argument('--workers', type=int, default=None, help='delivery workers (default from config, 1)')
    deliver.set_defaults(handler=run_deliver)

    outbox = commands.add_parser('outbox', help='outgoing messages').add_subparsers(metavar='ACTION')
    olist = outbox.add_parser('list', help='queued and failed messages (--all: sent ones too)')
    olist.add_argument('--all', action='store_true')
    olist.add_argument('--json', action='store_true')
    olist.set_defaults(handler=run_outbox_list)
    oretry = outbox.add_parser('retry', help='queue a failed or waiting message again, due now')
    oretry.add_argument('outbox_ids', type=int, nargs='+', metavar='ID')
    oretry.add_argument('--json', action='store_true')
    oretry.set_defaults(handler=run_outbox_retry)

    quarantine = commands.add_parser('quarantine', help='messages kept with the reason they are not tickets')
    held = quarantine.add_subparsers(metavar='ACTION')
    qlist = held.add_parser('list', help='held messages')
    qlist.add_argument('--all', action='store_true', help='released ones too')
    qlist.add_argument('--json', action='store_true')
    qlist.set_defaults(handler=run_quarantine_list)
    qshow = held.add_parser('show', help='the reason and headers of one held message')
    qshow.add_argument('quarantine_id', type=int, metavar='ID')
    qshow.set_defaults(handler=run_quarantine_show)
    qretry = held.add_parser('retry', help='run held messages through intake again (all, or those named)')
    qretry.add_argument('ids', type=int, nargs='*', metavar='ID')
    qretry.add_argument('--json', action='store_true')
    qretry.set_defaults(handler=run_quarantine_retry)
    return parser


def _config(args):
    from .config import load_config
    return load_config(args.config)


def _database(config):
    from .db import open_database
    conn = open_database(config.database_url, config.embedded_data)
    conn.autocommit = True
    return conn


def _write_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, default=str) + '\n')


# ---------------------------------------------------------------------------------------------- parse

def run_parse(args) -> int:
    failed = False
    out = sys.stdout
    for path in args.files:
        parsed, reason = _parse_file(path)
        if reason is not None:
            failed = True
        if args.json:
            line = error_json(path, reason) if reason is not None else parsed.to_json(path)
            out.write(json.dumps(line, ensure_ascii=False) + '\n')
        else:
            out.write(_summary(path, parsed, reason))
        out.flush()
    return 1 if failed else 0


def _parse_file(path: str) -> tuple[ParsedMail | None, str | None]:
    try:
        with open(path, 'rb') as handle:
            raw = handle.read()
    except OSError as exc:
        return None, 'cannot read file: %s' % (exc.strerror or exc)
    try:
        return parse_message(raw), None
    except NotAMessage as exc:
        return None, str(exc)


def _summary(path: str, parsed: ParsedMail | None, reason: str | None) -> str:
    if reason is not None:
        return '%s\n  error: %s\n\n' % (path, reason)
    lines = [path]
    sender = parsed.from_
    lines.append('  From:        %s' % (('%s <%s>' % (sender.name, sender.email)) if sender else '-'))
    lines.append('  To:          %s' % (', '.join(a.email or a.name for a in parsed.to) or '-'))
    lines.append('  Subject:     %s' % parsed.subject)
    lines.append('  Date:        %s' % (parsed.date.isoformat() if parsed.date else '-'))
    lines.append('  Message-ID:  %s' % (parsed.message_id or '-'))
    if parsed.in_reply_to or parsed.references:
        lines.append('  In reply to: %s' % ' '.join(parsed.in_reply_to or parsed.references[-1:]))
    preview = ' '.join(parsed.text.split())[:160]
    lines.append('  Text:        %s' % (preview or '(empty)'))
    lines.append('  HTML:        %s' % ('%d characters' % len(parsed.html) if parsed.html else 'none'))
    for a in parsed.attachments:
        lines.append('  Attachment:  %s (%s, %d bytes%s)' % (a.filename, a.content_type, a.size,
                                                              ', inline' if a.inline else ''))
    if parsed.auto_submitted:
        lines.append('  Automatic:   %s' % parsed.auto_submitted)
    if parsed.bounce:
        b = parsed.bounce
        lines.append('  Bounce:      %s %s for %s (original %s)' % (b.action or '?', b.status or '?',
                                                                   ', '.join(b.recipients) or '?',
                                                                   b.original_message_id or '?'))
    for defect in parsed.defects:
        lines.append('  Defect:      %s' % defect)
    return '\n'.join(lines) + '\n\n'


# --------------------------------------------------------------------------------------------- database

def run_initdb(args) -> int:
    config = _config(args)
    conn = _database(config)
    conn.close()
    sys.stdout.write('schema is in place\n')
    return EXIT_OK


def run_mailbox_add(args) -> int:
    from .store import add_mailbox, load_mailboxes
    conn = _database(_config(args))
    existing = [m for m in load_mailboxes(conn) if m.address.lower() == args.address.lower()]
    if existing:                  # idempotent, like mkdir -p: scripts can run it every time
        mailbox, state = existing[0], 'exists already, unchanged'
    else:
        mailbox, state = add_mailbox(conn, args.address, args.name, args.category, args.priority,
                                     args.follow_up, args.default, args.catch_all), 'added'
    if args.json:
        _write_json(_mailbox_json(mailbox))
    else:
        sys.stdout.write('mailbox %d: %s (%s)\n' % (mailbox.mailbox_id, mailbox.address, state))
    return EXIT_OK


def run_mailbox_ack(args) -> int:
    from .acks import DEFAULT_TEMPLATE, AckError, check_template
    from .store import load_mailboxes, set_ack_template
    conn = _database(_config(args))
    mailbox = _named_mailbox(load_mailboxes(conn), args.address)
    template = None if args.off else DEFAULT_TEMPLATE if args.default else _read_text(args.template)
    if template is not None:
        try:
            check_template(template)
        except AckError as exc:
            raise UsageError(str(exc)) from exc
    set_ack_template(conn, mailbox.mailbox_id, template)
    sys.stdout.write('mailbox %s: %s\n' % (mailbox.address, 'no acknowledgements' if template is None else
                                            'acknowledges new tickets'))
    return EXIT_OK


def _read_text(path: str) -> str:
    try:
        with open(path, encoding='utf-8', errors='replace') as handle:
            return handle.read()
    except OSError as exc:
        raise UsageError('cannot read %s: %s' % (path, exc.strerror)) from exc


def run_mailbox_list(args) -> int:
    from .store import load_mailboxes
    for mailbox in load_mailboxes(_database(_config(args))):
        if args.json:
            _write_json(_mailbox_json(mailbox))
        else:
            sys.stdout.write('%4d  %-40s %s%s\n' % (mailbox.mailbox_id, mailbox.address, mailbox.name,
                                                    '  (default)' if mailbox.is_default else ''))
    return EXIT_OK


def _mailbox_json(mailbox) -> dict:
    return {'MailboxId': mailbox.mailbox_id, 'Address': mailbox.address, 'Name': mailbox.name,
            'Category': mailbox.category, 'Priority': mailbox.priority, 'FollowUp': mailbox.follow_up,
            'IsDefault': mailbox.is_default, 'CatchAll': mailbox.catch_all,
            'Acknowledges': mailbox.ack_template is not None}


def run_replay(args) -> int:
    from .intake import QUARANTINED, Intake
    from .replay import Progress, print_outcome
    from .sources import check_paths, iter_messages
    from .store import load_mailboxes
    missing = check_paths(args.paths)
    if missing:
        raise UsageError('no such file or directory: %s' % ', '.join(missing))
    from .runtime import keep_large_blocks_out_of_the_heap
    keep_large_blocks_out_of_the_heap()
    config = _config(args)
    conn = _database(config)
    mailbox = _named_mailbox(load_mailboxes(conn), args.mailbox) if args.mailbox else None
    progress = Progress()
    for outcome in Intake(conn, config, mailbox).run(iter_messages(args.paths)):
        progress.add(outcome)
        if args.json:
            print_outcome(outcome, config, sys.stdout)
    progress.finish(sys.stderr if args.json else sys.stdout)
    return EXIT_INCOMPLETE if progress.counts[QUARANTINED] else EXIT_OK


def _named_mailbox(mailboxes, address: str):
    for mailbox in mailboxes:
        if mailbox.address.lower() == address.lower():
            return mailbox
    raise UsageError('no mailbox %s (add it with `postdesk mailbox add %s`)' % (address, address))


def run_ticket_show(args) -> int:
    from .tickets import TicketNotFound, ticket_entity
    conn = _database(_config(args))
    try:
        entity = ticket_entity(conn, args.ticket_id)
    except TicketNotFound as exc:
        raise UsageError(str(exc)) from exc
    if args.json:
        _write_json(entity)
        return EXIT_OK
    sys.stdout.write('Ticket %d: %s\n' % (entity['TicketId'], entity['Title']))
    for key in ('BaseStatus', 'Status', 'CreatedAt', 'LastChanged', 'FromAddress', 'ConnectId', 'NumMessages',
                'NumReplies', 'HasAttachment'):
        sys.stdout.write('  %-14s %s\n' % (key + ':', entity[key]))
    for message in entity['Messages']:
        sys.stdout.write('  #%d %s %s [%s] %s\n' % (message['TicketMessageId'], message['CreatedAt'][:19],
                                                    message['Type'], message['ThreadRule'], message['Author']))
        sys.stdout.write('      %s\n' % message['Subject'])
    return EXIT_OK


def run_ticket_list(args) -> int:
    from .tickets import list_tickets
    for ticket in list_tickets(_database(_config(args))):
        if args.json:
            _write_json(ticket)
        else:
            sys.stdout.write('%6d  %-9s %3d  %s\n' % (ticket['TicketId'], ticket['BaseStatus'],
                                                      ticket['NumMessages'], ticket['Title']))
    return EXIT_OK


# ------------------------------------------------------------------------------------------- quarantine

def run_quarantine_list(args) -> int:
    from .quarantine import list_held
    for held in list_held(_database(_config(args)), args.all):
        if args.json:
            _write_json({'QuarantineId': held.quarantine_id, 'CreatedAt': held.created_at.isoformat(),
                         'Reason': held.reason, 'Source': held.source, 'Mailbox': held.mailbox_hint,
                         'Size': held.size, 'State': held.state})
        else:
            sys.stdout.write('%5d  %s  %-30s %s\n' % (held.quarantine_id, held.created_at.strftime('%Y-%m-%d %H:%M'),
                                                     held.source[-30:], held.reason))
    return EXIT_OK


def run_quarantine_show(args) -> int:
    from .quarantine import show
    found = show(_database(_config(args)), args.quarantine_id)
    if found is None:
        raise UsageError('no quarantined message %d' % args.quarantine_id)
    held, headers = found
    sys.stdout.write('Quarantined message %d (%s)\n' % (held.quarantine_id, held.state))
    sys.stdout.write('  Reason:   %s\n  Source:   %s\n  Received: %s\n  Size:     %d bytes\n\n'
                     % (held.reason, held.source, held.created_at.isoformat(), held.size))
    sys.stdout.write(headers + '\n')
    return EXIT_OK


def run_quarantine_retry(args) -> int:
    from .intake import QUARANTINED
    from .quarantine import retry
    from .replay import ticket_info
    config = _config(args)
    results = retry(_database(config), config, args.ids or None)
    for quarantine_id, outcome in results:
        if args.json:
            _write_json(dict(ticket_info(outcome, config), QuarantineId=quarantine_id))
        else:
            sys.stdout.write('%5d  %s%s\n' % (quarantine_id, outcome.outcome,
                                              ': ' + outcome.reason if outcome.reason else
                                              ' (ticket %d)' % outcome.ticket.ticket_id if outcome.ticket else ''))
    return EXIT_INCOMPLETE if any(o.outcome == QUARANTINED for _, o in results) else EXIT_OK


# ------------------------------------------------------------------------------------------------ serve

def run_serve(args) -> int:
    from .runtime import keep_large_blocks_out_of_the_heap
    from .serve import serve
    from .smtp import ListenError, parse_listen
    config = _config(args)
    smtp = _listen_option(args.smtp, config.smtp_listen)
    lmtp = _listen_option(args.lmtp, config.lmtp_listen)
    for value in (smtp, lmtp):
        if value:
            try:
                parse_listen(value)
            except ListenError as exc:
                raise UsageError(str(exc)) from exc
    if not smtp and not lmtp:
        raise UsageError('nothing to listen on: give --smtp and/or --lmtp')
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger('mail.log').setLevel(logging.WARNING)      # aiosmtpd's own per-command trace
    for handler in logging.getLogger().handlers:
        handler.setFormatter(logging.Formatter('%(asctime)s %(name)s %(message)s'))
    keep_large_blocks_out_of_the_heap()
    return serve(config, smtp, lmtp, config.intake_workers if args.workers is None else args.workers)


def _listen_option(value: str | None, default: str) -> str:
    if value is None:
        return default
    return '' if value.lower() in ('', 'off', 'none') else value


# ------------------------------------------------------------------------------------------ replies, outbox

def run_reply(args) -> int:
    from .replies import Answer, ReplyError, error_object, send_reply
    config = _config(args)
    try:
        answer = Answer(ticket_id=args.ticket_id, body_html=_answer_html(args), leave_open=args.leave_open,
                        expect_reply=args.expect_reply, supress_subject_ref=args.no_subject_ref,
                        dest_email=tuple(args.to), cc=tuple(args.cc), bcc=tuple(args.bcc),
                        attachments=tuple(_attachment(path) for path in args.attach), note=args.note,
                        agent=args.agent, in_response_to=args.in_response_to)
        result = send_reply(_database(config), answer, config.timezone)
    except (ReplyError, UsageError) as exc:
        if args.json:
            _write_json(error_object(str(exc)))
        raise UsageError(str(exc)) from exc
    if args.json:
        _write_json(result)
    else:
        reply = result['response']
        sys.stdout.write('reply %s on ticket %d queued: %s\n  to: %s\n' % (
            reply['row']['id'], args.ticket_id, reply['row']['subject'], result['details']['toAddress']))
    return EXIT_OK


def _answer_html(args) -> str:
    import html
    if args.text is not None:
        return '<div>%s</div>' % html.escape(args.text).replace('\n', '<br>\n')
    return sys.stdin.read() if args.html == '-' else _read_text(args.html)


def _attachment(path: str):
    import mimetypes
    import os
    from outbound.compose import OutgoingAttachment
    try:
        with open(path, 'rb') as handle:
            data = handle.read()
    except OSError as exc:
        raise UsageError('cannot read attachment %s: %s' % (path, exc.strerror)) from exc
    kind = mimetypes.guess_type(path)[0] or 'application/octet-stream'
    return OutgoingAttachment(os.path.basename(path), kind, data)


def run_deliver(args) -> int:
    import threading
    import psycopg
    from .db import DatabaseUnavailable, connect, resolve_database_url
    from .delivery import NoRelay, relay_of, run_delivery_worker
    config = _config(args)
    try:
        relay_of(config)
    except NoRelay as exc:
        raise UsageError(str(exc)) from exc
    url = resolve_database_url(config.database_url, config.embedded_data)
    _database(config).close()                       # the schema, before the workers start
    if not args.once:
        logging.getLogger().setLevel(logging.INFO)
    states: dict[str, int] = {'sent': 0, 'deferred': 0, 'failed': 0}
    lock = threading.Lock()

    def report(attempt) -> None:
        with lock:
            states[attempt.state] += 1
            if args.once:
                sys.stdout.write('outbox %d: %s (%s)\n' % (attempt.row.outbox_id, attempt.state,
                                                          attempt.result.reply))
                sys.stdout.flush()

    stop = threading.Event()
    _stop_on_signals(stop)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            run_delivery_worker(lambda: connect(url, autocommit=True), config, stop, args.once, report)
        except Exception as exc:            # --once: a worker that could not finish makes the run fail
            logging.getLogger('postdesk.delivery').error('delivery worker stopped: %s', exc)
            errors.append(exc)

    workers = [threading.Thread(target=work, name='postdesk-deliver-%d' % n)
               for n in range(args.workers or config.delivery_workers)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if args.once:
        sys.stdout.write('sent %(sent)d, deferred %(deferred)d, failed %(failed)d\n' % states)
    if any(isinstance(exc, (DatabaseUnavailable, psycopg.OperationalError)) for exc in errors):
        raise DatabaseUnavailable('delivery stopped: the database is unavailable')
    return EXIT_INCOMPLETE if errors or states['deferred'] or states['failed'] else EXIT_OK


def _stop_on_signals(stop) -> None:
    import signal
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())


def run_outbox_list(args) -> int:
    from .delivery import list_outbox
    states = ('queued', 'sent', 'failed') if args.all else ('queued', 'failed')
    for entry in list_outbox(_database(_config(args)), states):
        if args.json:
            _write_json(entry.to_json())
        else:
            sys.stdout.write('%5d  %-6s  ticket %-6s %-30s attempts %d  %s\n' % (
                entry.outbox_id, entry.state, entry.ticket_id, ','.join(entry.rcpt_to)[:30], entry.attempts,
                entry.last_error or entry.relay_reply or entry.subject))
    return EXIT_OK


def run_outbox_retry(args) -> int:
    from .delivery import retry_outbox
    conn = _database(_config(args))
    missing = []
    for outbox_id in args.outbox_ids:
        entry = retry_outbox(conn, outbox_id)
        if entry is None:
            missing.append(outbox_id)
        elif args.json:
            _write_json(entry.to_json())
        else:
            sys.stdout.write('%d: %s\n' % (outbox_id, 'queued, due now' if entry.state == 'queued' else
                                            'already sent; not sent again'))
    if missing:
        raise UsageError('no outbox message %s' % ', '.join(map(str, missing)))
    return EXIT_OK
