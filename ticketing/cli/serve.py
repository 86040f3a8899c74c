"""`postdesk serve`: SMTP and LMTP intake with its workers, and the HTTP API (see `ticketing.serve`)."""
from __future__ import annotations

import logging

from .command import UsageError, config_of


def add_parsers(commands) -> None:
    serve = commands.add_parser('serve', help='SMTP and LMTP intake, with intake workers, and the HTTP API')
    serve.add_argument('--smtp', metavar='HOST:PORT', help='SMTP listener ("off" for none; default from config)')
    serve.add_argument('--lmtp', metavar='HOST:PORT|unix:PATH', help='LMTP listener ("off" for none)')
    serve.add_argument('--http', metavar='HOST:PORT', help='HTTP API ("off" for none; default from config)')
    serve.add_argument('--workers', type=int, help='intake worker processes (default from config, 1)')
    serve.set_defaults(handler=run_serve)


def listen_option(value: str | None, default: str) -> str:
    if value is None:
        return default
    return '' if value.lower() in ('', 'off', 'none') else value


def run_serve(args) -> int:
    from ..intake.memory import keep_large_blocks_out_of_the_heap
    from ..mail.listener import ListenError, parse_listen
    from ..serve import serve
    config = config_of(args)
    smtp = listen_option(args.smtp, config.smtp_listen)
    lmtp = listen_option(args.lmtp, config.lmtp_listen)
    http = listen_option(args.http, config.http_listen)
    for value in (smtp, lmtp, http):
        if value:
            try:
                parse_listen(value)
            except ListenError as exc:
                raise UsageError(str(exc)) from exc
    if http.startswith('unix:'):
        raise UsageError('the HTTP API listens on HOST:PORT, not %s' % http)
    if not smtp and not lmtp and not http:
        raise UsageError('nothing to listen on: give --smtp, --lmtp and/or --http')
    log_for_a_server()
    keep_large_blocks_out_of_the_heap()
    return serve(config, smtp, lmtp, config.intake_workers if args.workers is None else args.workers, http)


def log_for_a_server() -> None:
    """One line per event with a timestamp (or one JSON object, --log-format json); aiosmtpd's own per-command
    trace is left out."""
    from ..logs import TEXT, use_format, uses_json
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger('mail.log').setLevel(logging.WARNING)
    logging.getLogger('uvicorn.error').setLevel(logging.WARNING)
    if not uses_json():
        use_format(TEXT)
