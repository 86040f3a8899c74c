"""Where replayed messages come from: .eml files, directories (recursively), mbox files and Maildirs, recognised by
content, and streamed one message at a time so memory stays flat for a mailbox of any size.

mbox follows the mboxrd convention (RFC 4155 and qmail's mbox(5)), read the way mutt reads it: a message starts
at a `From ` line that begins the file or follows an empty line, *and* looks like an envelope line (`From `, a
return path, an asctime date such as `Mon Nov 16 09:00:00 2026`), *and* is followed by a header line. Any other
`From ` line (an unescaped `From the office...` in a body written by a tool that does not escape) stays body
text. `>From ` lines lose one `>`. A Maildir is a folder with `cur` and `new` (`tmp` holds deliveries in progress
and is skipped), read in delivery order: by the timestamp that starts each file name (maildir(5)), across `cur`
and `new` together. Hidden files are skipped.
"""
from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

from ..model import SourceMessage

log = logging.getLogger('postdesk.replay')

# An envelope line as RFC 4155 and mutt's is_from() accept it: `From `, a return path (possibly empty or with
# spaces inside quotes), then an asctime date `Www Mmm dd hh:mm[:ss] [zone] yyyy`.
_DAY = rb'(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)'
_MONTH = rb'(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)'
_ENVELOPE_LINE = re.compile(
    rb'^From (?:"[^"]*"|\S*) *,? +' + _DAY + rb',? +' + _MONTH + rb' +\d{1,2},? +\d{1,2}:\d{2}(?::\d{2})?'
    rb'(?: +(?:[A-Z]{1,5}|[+-]\d{4}))*,? +\d{4}(?: +(?:[A-Z]{1,5}|[+-]\d{4}))? *\r?$', re.I)
_MAILDIR_TIME = re.compile(r'^(\d+)(?:\.[^.]*?M(\d+))?')     # seconds, and the microseconds of `M` (maildir(5))
_HEADER_LINE = re.compile(rb'^[\x21-\x39\x3b-\x7e]+[ \t]*:')
_ESCAPED_FROM = re.compile(rb'^>(>*From )')


class SourceError(OSError):
    """A path given to replay cannot be read (it does not exist, is not a file or folder, or vanished)."""


def iter_messages(paths: list[str]) -> Iterator[SourceMessage]:
    """The messages of every path, in order. Raises SourceError when a path does not exist or cannot be read,
    also when it vanishes or becomes unreadable during the run."""
    for path in paths:
        try:
            if os.path.isdir(path):
                yield from _iter_directory(path)
            elif os.path.isfile(path):
                yield from _iter_file(path)
            else:
                raise SourceError('%s: no such file or directory' % path)
        except SourceError:
            raise
        except OSError as exc:
            raise SourceError('%s: %s' % (exc.filename or path, exc.strerror or exc)) from exc


@dataclass(frozen=True)
class InputSize:
    """What a replay will read: how many message files and bytes, and whether mbox files (whose messages are
    only counted by reading them) are among them."""
    files: int = 0
    size: int = 0
    mboxes: int = 0

    def __add__(self, other: 'InputSize') -> 'InputSize':
        return InputSize(self.files + other.files, self.size + other.size, self.mboxes + other.mboxes)


def measure(paths: list[str]) -> InputSize:
    """The size of the input, walked the way iter_messages reads it (names and sizes only, and the first bytes
    of each file to tell an mbox)."""
    total = InputSize()
    for path in paths:
        if os.path.isdir(path):
            total += _measure_directory(path)
        elif os.path.isfile(path):
            total += _measure_file(path)
    return total


def _measure_file(path: str) -> InputSize:
    size = os.path.getsize(path)
    return InputSize(0, size, 1) if looks_like_mbox(path) else InputSize(1, size, 0)


def _measure_directory(root: str) -> InputSize:
    total = InputSize()
    if is_maildir(root):
        for relative in _delivery_order(root):
            path = os.path.join(root, relative)
            if os.path.isfile(path):
                total += InputSize(1, os.path.getsize(path), 0)
        folders = [os.path.join(root, n) for n in _sorted_names(root) if n.startswith('.')]
        return sum((_measure_directory(f) for f in folders if is_maildir(f)), total)
    for name in _sorted_names(root):
        path = os.path.join(root, name)
        if name.startswith('.'):
            continue
        if os.path.isdir(path):
            total += _measure_directory(path)
        elif os.path.isfile(path):
            total += _measure_file(path)
    return total


def check_paths(paths: list[str]) -> list[str]:
    """The paths that do not exist (a usage error, reported before anything is read)."""
    return [p for p in paths if not (os.path.isdir(p) or os.path.isfile(p))]


def is_maildir(path: str) -> bool:
    return os.path.isdir(os.path.join(path, 'cur')) and os.path.isdir(os.path.join(path, 'new'))


def _iter_directory(root: str, visited: set | None = None) -> Iterator[SourceMessage]:
    """The messages of a folder and its sub-folders, each folder read once (a symbolic link back up the tree
    is not followed round again)."""
    visited = set() if visited is None else visited
    status = os.stat(root)
    identity = (status.st_dev, status.st_ino)
    if identity in visited:
        log.warning('%s: a folder read already (a symbolic link loop); skipped', root)
        return
    visited.add(identity)
    if is_maildir(root):
        yield from _iter_maildir(root)
        return
    for name in _sorted_names(root):        # names only: a folder of 100,000 messages costs a few MB, no more
        if name.startswith('.'):
            continue
        path = os.path.join(root, name)
        if os.path.isdir(path):
            yield from _iter_directory(path, visited)
        elif os.path.isfile(path):
            yield from _iter_file(path)


def _iter_maildir(root: str) -> Iterator[SourceMessage]:
    for relative in _delivery_order(root):
        path = os.path.join(root, relative)
        if os.path.isfile(path):
            yield SourceMessage(_read(path), path, path)
    for name in _sorted_names(root):          # Maildir++ sub-folders: .Sent, .Archive
        path = os.path.join(root, name)
        if name.startswith('.') and is_maildir(path):
            yield from _iter_maildir(path)


def delivery_key(name: str) -> tuple:
    """Where a Maildir file name puts a message in delivery order: the seconds that start the name, the
    microseconds of its `M` part when it has one, then the name; names without a timestamp come last."""
    found = _MAILDIR_TIME.match(name)
    if found is None:
        return (1, 0, 0, name)
    return (0, int(found.group(1)), int(found.group(2) or 0), name)


def _delivery_order(root: str) -> Iterator[str]:
    """The `cur/NAME` and `new/NAME` entries of a Maildir, oldest delivery first."""
    entries = [(delivery_key(name), sub) + (name,) for sub in ('cur', 'new')
               for name in os.listdir(os.path.join(root, sub)) if not name.startswith('.')]
    entries.sort()
    packed = '\0'.join('%s/%s' % (sub, name) for _, sub, name in entries)
    del entries
    yield from _unpacked(packed)


def _sorted_names(folder: str) -> Iterator[str]:
    """A folder's entries in name order. The sorted names are kept as one string while the folder is read:
    for a Maildir of 100,000 messages that is about 2 MB instead of 7 MB of separate string objects."""
    yield from _unpacked('\0'.join(sorted(os.listdir(folder))))


def _unpacked(packed: str) -> Iterator[str]:
    start = 0
    while start < len(packed):
        end = packed.find('\0', start)
        end = len(packed) if end < 0 else end
        yield packed[start:end]
        start = end + 1


def _iter_file(path: str) -> Iterator[SourceMessage]:
    if looks_like_mbox(path):
        yield from iter_mbox(path)
    else:
        yield SourceMessage(_read(path), path, path)


def _read(path: str) -> bytes:
    with open(path, 'rb') as handle:
        return handle.read()


def looks_like_mbox(path: str) -> bool:
    """An mbox starts with a `From ` envelope line (address and asctime date) followed by a header line."""
    with open(path, 'rb') as handle:
        head = handle.read(4096)
    lines = head.split(b'\n', 2)
    return (len(lines) >= 2 and _ENVELOPE_LINE.match(lines[0]) is not None
            and _HEADER_LINE.match(lines[1]) is not None)


def iter_mbox(path: str) -> Iterator[SourceMessage]:
    """The messages of an mbox file, one at a time. A `From ` line that could start a message is held until the
    next line shows whether a header block follows it."""
    number = 0
    lines: list[bytes] = []
    previous_blank = True
    held: bytes | None = None              # a candidate envelope line, decided by the line after it
    with open(path, 'rb') as handle:
        for line in handle:
            if held is not None:
                if _HEADER_LINE.match(line) and (lines or number):
                    number += 1
                    yield SourceMessage(_mbox_message(lines), '%s#%d' % (path, number), path)
                    lines = []
                elif not _HEADER_LINE.match(line):
                    lines.append(held)                 # not an envelope line after all: body text
                held = None
            elif previous_blank and _ENVELOPE_LINE.match(line):
                held, previous_blank = line, False
                continue
            lines.append(_ESCAPED_FROM.sub(rb'\1', line))
            previous_blank = line in (b'\n', b'\r\n')
    if held is not None:
        lines.append(held)
    if lines:
        number += 1
        yield SourceMessage(_mbox_message(lines), '%s#%d' % (path, number), path)


def _mbox_message(lines: list[bytes]) -> bytes:
    """Join a message's lines, dropping the one empty line mbox puts between messages."""
    if lines and lines[-1] in (b'\n', b'\r\n'):
        lines = lines[:-1]
    return b''.join(lines)
