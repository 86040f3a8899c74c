"""Log output: postdesk's lines as text (`key=value` pairs after a timestamp) or, for log shippers, as JSON Lines
(one object per line, RFC 8259): `time` (ISO 8601, UTC), `level`, `logger`, `message`, and each `key=value`
pair of the message as a field of its own (`peer`, `from`, `to`, `message-id`, `outcome`, `ticket`, `ms`,
`reason`, ...); whole numbers as numbers. A traceback goes in `exception`.

Chosen with `--log-format json` or `[logging] format = "json"` (POSTDESK_LOG_FORMAT).
"""
from __future__ import annotations

import datetime
import json
import logging
import re

from .config import ConfigError

TEXT, JSON = 'text', 'json'
FORMATS = (TEXT, JSON)
TEXT_FORMAT = '%(asctime)s %(name)s %(message)s'
BRIEF_FORMAT = '%(levelname)s %(name)s: %(message)s'
# A pair starts a message or follows a space; free text (reason, reply) runs to the end of the line.
_PAIR = re.compile(r'(?:^|(?<= ))([a-z][a-z0-9_-]*)=')
_FREE_TEXT = frozenset({'reason', 'reply'})
_RESERVED = frozenset({'time', 'level', 'logger', 'message', 'exception'})


class LogFormatError(ConfigError):
    """A log format postdesk does not know."""


def fields_of(message: str) -> dict:
    """The `key=value` pairs of a message, in order (empty when it does not start with one)."""
    found = list(_PAIR.finditer(message))
    if not found or found[0].start() != 0:
        return {}
    fields: dict = {}
    for number, match in enumerate(found):
        key = match.group(1)
        if key in fields:
            continue
        free = key in _FREE_TEXT
        end = len(message) if free or number + 1 == len(found) else found[number + 1].start()
        fields[key] = typed(message[match.end():end].strip())
        if free:
            break
    return fields


def typed(value: str):
    return int(value) if value.isascii() and value.isdigit() and len(value) < 19 else value


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        entry = {'time': datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc).isoformat(
                     timespec='milliseconds'),
                 'level': record.levelname, 'logger': record.name, 'message': message}
        for key, value in fields_of(message).items():
            entry[key if key not in _RESERVED else 'field_' + key] = value
        if record.exc_info:
            entry['exception'] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def formatter(log_format: str, text_format: str = TEXT_FORMAT) -> logging.Formatter:
    if log_format == JSON:
        return JsonFormatter()
    if log_format == TEXT:
        return logging.Formatter(text_format)
    raise LogFormatError('log format must be one of %s, not %r' % (', '.join(FORMATS), log_format))


def use_format(log_format: str, text_format: str = TEXT_FORMAT) -> None:
    """Every handler of the root logger writes in this format."""
    chosen = formatter(log_format, text_format)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(chosen)


def uses_json() -> bool:
    return any(isinstance(h.formatter, JsonFormatter) for h in logging.getLogger().handlers)
