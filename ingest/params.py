"""MIME header parameters (RFC 2045 5.1 `type/subtype; name=value`, RFC 2183 Content-Disposition) with RFC 2231
extended and continued values, parsed from the raw bytes so that 8-bit file names survive.

The standard library's compat32 accessors turn raw 8-bit parameter values into U+FFFD before we can repair
them; here a value comes back as bytes plus the charset it claims, and `headers.decode_header` or `charsets`
decide how to read it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from .headers import raw_bytes, unfold

_CONTROL = re.compile(r'[\x00-\x1f\x7f\ufffd]')
_PARAM = re.compile(r';\s*([^\s=;"]+)\s*=\s*("[^"\\]*(?:\\.[^"\\]*)*"?|[^;]*)')
_SECTION = re.compile(r'^(?P<name>[^*]+)(?:\*(?P<index>\d+))?(?P<extended>\*)?$')


@dataclass(frozen=True)
class ParamValue:
    """A parameter's bytes; `charset` is set when the value came from RFC 2231 `name*=charset'lang'...`."""
    data: bytes
    charset: str | None
    extended: bool


def main_value(value) -> str:
    """The part of a structured header before the first `;`, lower-cased: `attachment`, `text/plain`."""
    if value is None:
        return ''
    text = value if isinstance(value, str) and value.isascii() else unfold(raw_bytes(value)).decode('ascii', 'replace')
    return _CONTROL.sub('', text.split(';', 1)[0]).strip().strip('"').lower()


def parse_params(value) -> dict[str, ParamValue]:
    """The parameters of a Content-Type or Content-Disposition value, continuations joined, names lower-cased."""
    if value is None:
        return {}
    text = unfold(raw_bytes(value)).decode('utf-8', 'surrogateescape')
    if ';' not in text:
        return {}
    sections: dict[str, list[tuple[int, bool, str]]] = {}
    for found in _PARAM.finditer(text):
        match = _SECTION.match(found.group(1).lower())
        if not match:
            continue
        index = int(match.group('index') or 0)
        sections.setdefault(match.group('name').strip(), []).append(
            (index, bool(match.group('extended')), _unquote(found.group(2).strip())))
    return {name: _join_sections(parts) for name, parts in sections.items()}


def _unquote(value: str) -> str:
    """A quoted string's content. Only `\\"` and `\\\\` are taken as quoted pairs: Windows mailers write paths
    with single backslashes inside quotes (`"C:\\Users\\x\\report.pdf"`), which must keep them."""
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return re.sub(r'\\([\\"])', r'\1', value[1:-1])
    if value.startswith('"'):
        return value[1:]            # an unterminated quoted string: keep what is there
    return value


def _join_sections(parts: list[tuple[int, bool, str]]) -> ParamValue:
    """RFC 2231 3-4: sections in index order; `*` sections are %-encoded; the first may carry charset'lang'.

    When a plain and an extended value share an index (`filename=` and `filename*=` both sent), the extended one
    wins; otherwise the first occurrence does.
    """
    chosen: dict[int, tuple[int, bool, str]] = {}
    for part in parts:
        if part[0] not in chosen or (part[1] and not chosen[part[0]][1]):
            chosen[part[0]] = part
    parts = [chosen[i] for i in sorted(chosen)]
    charset = None
    extended = any(p[1] for p in parts)
    data = bytearray()
    for position, (index, is_extended, text) in enumerate(parts):
        if is_extended and position == 0 and text.count("'") >= 2:
            charset, _lang, text = text.split("'", 2)
            charset = charset or None
        raw = text.encode('utf-8', 'surrogateescape')
        data += unquote_to_bytes(raw) if is_extended else raw
    return ParamValue(bytes(data), charset, extended)
