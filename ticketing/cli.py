"""The `postdesk` command line: argument parsing and dispatch to the commands.

Exit status: 0 success, 1 when some input was not handled (a file that is not a message, a quarantined
message), 2 for usage errors (argparse's own convention).
"""
from __future__ import annotations

import argparse
import json
import sys

from ingest import NotAMessage, ParsedMail, error_json, parse_message


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, 'handler', None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.handler(args)
    except BrokenPipeError:
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='postdesk', description='Email ingestion and ticketing pipeline.')
    commands = parser.add_subparsers(title='commands', metavar='COMMAND')
    parse = commands.add_parser('parse', help='show what postdesk sees in message files (no database)')
    parse.add_argument('--json', action='store_true', help='one JSON object per file per line')
    parse.add_argument('files', nargs='+', metavar='FILE')
    parse.set_defaults(handler=run_parse)
    return parser


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
