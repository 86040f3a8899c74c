"""`postdesk parse`: what postdesk sees in message files, without a database. `--json` prints one object per file
(the contract of `ingest.ParsedMail.to_json`); exit 1 when a file is not a message."""
from __future__ import annotations

import json
import sys

from ingest import NotAMessage, ParsedMail, error_json, parse_message

from .command import EXIT_INCOMPLETE, EXIT_OK


def add_parsers(commands) -> None:
    parse = commands.add_parser('parse', help='show what postdesk sees in message files (no database)')
    parse.add_argument('--json', action='store_true', help='one JSON object per file per line')
    parse.add_argument('files', nargs='+', metavar='FILE')
    parse.set_defaults(handler=run_parse)


def run_parse(args) -> int:
    failed = False
    out = sys.stdout
    for path in args.files:
        parsed, reason = parse_file(path)
        if reason is not None:
            failed = True
        if args.json:
            line = error_json(path, reason) if reason is not None else parsed.to_json(path)
            out.write(json.dumps(line, ensure_ascii=False) + '\n')
        else:
            out.write(summary(path, parsed, reason))
        out.flush()
    return EXIT_INCOMPLETE if failed else EXIT_OK


def parse_file(path: str) -> tuple[ParsedMail | None, str | None]:
    try:
        with open(path, 'rb') as handle:
            raw = handle.read()
    except OSError as exc:
        return None, 'cannot read file: %s' % (exc.strerror or exc)
    try:
        return parse_message(raw), None
    except NotAMessage as exc:
        return None, str(exc)


def summary(path: str, parsed: ParsedMail | None, reason: str | None) -> str:
    if reason is not None:
        return '%s\n  error: %s\n\n' % (path, reason)
    sender = parsed.from_
    lines = [path,
             '  From:        %s' % (('%s <%s>' % (sender.name, sender.email)) if sender else '-'),
             '  To:          %s' % (', '.join(a.email or a.name for a in parsed.to) or '-'),
             '  Subject:     %s' % parsed.subject,
             '  Date:        %s' % (parsed.date.isoformat() if parsed.date else '-'),
             '  Message-ID:  %s' % (parsed.message_id or '-')]
    if parsed.in_reply_to or parsed.references:
        lines.append('  In reply to: %s' % ' '.join(parsed.in_reply_to or parsed.references[-1:]))
    preview = ' '.join(parsed.text.split())[:160]
    lines.append('  Text:        %s' % (preview or '(empty)'))
    lines.append('  HTML:        %s' % ('%d characters' % len(parsed.html) if parsed.html else 'none'))
    lines.extend(detail_lines(parsed))
    return '\n'.join(lines) + '\n\n'


def detail_lines(parsed: ParsedMail) -> list[str]:
    lines = ['  Attachment:  %s (%s, %d bytes%s)' % (a.filename, a.content_type, a.size, ', inline' if a.inline else '')
             for a in parsed.attachments]
    if parsed.auto_submitted:
        lines.append('  Automatic:   %s' % parsed.auto_submitted)
    if parsed.bounce:
        b = parsed.bounce
        lines.append('  Bounce:      %s %s for %s (original %s)' % (b.action or '?', b.status or '?',
                                                                   ', '.join(b.recipients) or '?',
                                                                   b.original_message_id or '?'))
    lines.extend('  Defect:      %s' % defect for defect in parsed.defects)
    return lines
