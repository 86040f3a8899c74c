"""Charset repair: turning the bytes of real mail into text without losing it or inventing U+FFFD.

Follows the `charset` parameter of RFC 2045/2046 and the label mapping of the WHATWG Encoding Standard, which
records what mail and web agents actually send: ISO-8859-1 and US-ASCII labels on Windows-1252 bytes, GB2312
labels on GBK/GB18030 bytes, EUC-KR on CP949, Shift_JIS on CP932, `iso-8859-8-i` for visual Hebrew.

A part's own ISO-8859-1 or Windows-1252 label is believed once UTF-8 has failed on its bytes; the charsets other
parts declare are guessed only for unlabelled (or `us-ascii`) 8-bit data, and for body text of that kind the
legacy CJK encodings (GB18030, Big5, Shift_JIS, EUC-KR) are tried with charset-normalizer's detector before
Windows-1252, kept only when the result is overwhelmingly CJK.

Everything here is pure: labels in, codec names out; bytes in, text out. Decoding never raises and never returns
a lone surrogate or NUL (PostgreSQL `text` rejects both).
"""
from __future__ import annotations

from collections.abc import Iterable

import codecs
import functools
import re

# Labels mapped to the codec that really decodes what senders label that way (a superset, never a subset).
_SUPERSETS = {
    'gb2312': 'gb18030', 'gb_2312': 'gb18030', 'gb_2312-80': 'gb18030', 'gbk': 'gb18030', 'x-gbk': 'gb18030',
    'euc-cn': 'gb18030', 'cp936': 'gb18030', 'chinese': 'gb18030', 'csgb2312': 'gb18030', 'hz-gb-2312': 'hz',
    'big5': 'big5hkscs', 'big5-hkscs': 'big5hkscs', 'x-x-big5': 'big5hkscs', 'cn-big5': 'big5hkscs', 'cp950': 'big5hkscs',
    'euc-kr': 'cp949', 'ks_c_5601-1987': 'cp949', 'ks_c_5601': 'cp949', 'ksc5601': 'cp949', 'korean': 'cp949',
    'x-windows-949': 'cp949', 'windows-949': 'cp949',
    'shift_jis': 'cp932', 'shift-jis': 'cp932', 'sjis': 'cp932', 'x-sjis': 'cp932', 'ms_kanji': 'cp932',
    'windows-31j': 'cp932', 'csshiftjis': 'cp932', 'euc-jp': 'euc_jis_2004', 'x-euc-jp': 'euc_jis_2004',
    'iso-2022-jp': 'iso2022_jp_ext', 'iso2022-jp': 'iso2022_jp_ext', 'csiso2022jp': 'iso2022_jp_ext',
    'iso-8859-1': 'cp1252', 'iso8859-1': 'cp1252', 'iso_8859-1': 'cp1252', 'latin1': 'cp1252', 'latin-1': 'cp1252',
    'l1': 'cp1252', 'iso-ir-100': 'cp1252', 'ibm819': 'cp1252', 'cp819': 'cp1252', 'csisolatin1': 'cp1252',
    'us-ascii': 'cp1252', 'ascii': 'cp1252', 'ansi_x3.4-1968': 'cp1252', 'us': 'cp1252', 'iso646-us': 'cp1252',
    'iso-8859-9': 'cp1254', 'latin5': 'cp1254', 'iso-8859-11': 'cp874', 'tis-620': 'cp874', 'windows-874': 'cp874',
    'iso-8859-8-i': 'iso8859_8', 'iso-8859-8-e': 'iso8859_8', 'logical': 'iso8859_8', 'visual': 'iso8859_8',
    'iso-8859-6-i': 'iso8859_6', 'iso-8859-6-e': 'iso8859_6',
    'unicode-1-1-utf-7': 'utf_7', 'utf-7': 'utf_7', 'x-utf-7': 'utf_7', 'utf7': 'utf_7',
    'utf8': 'utf_8', 'x-utf8': 'utf_8', 'unicode-1-1-utf-8': 'utf_8', 'unicode-2-0-utf-8': 'utf_8',
    'x-mac-roman': 'mac_roman', 'macintosh': 'mac_roman', 'x-mac-cyrillic': 'mac_cyrillic',
    'x-mac-greek': 'mac_greek', 'x-mac-turkish': 'mac_turkish', 'x-mac-ce': 'mac_latin2',
    'koi8-u': 'koi8_u', 'koi8-r': 'koi8_r', 'koi8': 'koi8_r', 'cp-850': 'cp850',
}
# Labels that carry no information about the bytes.
_UNKNOWN = {'', 'unknown', 'unknown-8bit', 'x-unknown', 'default', 'charset', 'none', 'x-user-defined',
            '8bit', '7bit', 'binary', 'us-ascii?', 'iso', 'auto', '_autodetect', '_autodetect_all'}
# Python codecs that are not character sets a mail body can be written in.
_NOT_MAIL_CODECS = {'idna', 'punycode', 'unicode_escape', 'raw_unicode_escape', 'undefined', 'mbcs', 'oem',
                    'palmos', 'rot_13', 'uu_codec', 'base64_codec', 'hex_codec', 'quopri_codec', 'zlib_codec',
                    'bz2_codec', 'charmap', 'unicode_internal'}
_CJK_FAMILIES = {'gb18030', 'big5hkscs', 'cp949', 'cp932', 'euc_jis_2004', 'iso2022_jp_ext', 'hz'}
# Multi-byte codecs reject most bytes that are not theirs, so trying one is a test; a single-byte codec is not.
_MULTIBYTE = _CJK_FAMILIES | {'iso2022_kr', 'utf_7', 'utf_16', 'utf_16_le', 'utf_16_be', 'utf_32', 'euc_jp',
                              'shift_jis', 'big5', 'gbk', 'gb2312', 'euc_kr', 'johab', 'cp950', 'shift_jis_2004',
                              'shift_jisx0213', 'euc_jisx0213', 'iso2022_jp', 'iso2022_jp_2', 'iso2022_jp_2004'}
# Charsets that are mistaken for each other: a label from one family is tried with its siblings (mail labelled
# ISO-2022-JP that is really Shift_JIS, EUC-KR that is CP949...).
_FAMILIES = (('iso2022_jp_ext', 'cp932', 'euc_jis_2004'), ('gb18030', 'big5hkscs', 'hz'), ('cp949', 'iso2022_kr'))
WESTERN = 'cp1252'
# Labels that say "7-bit ASCII": on 8-bit data they carry no information, like no label at all.
_ASCII_LABELS = {'us-ascii', 'ascii', 'ansi_x3.4-1968', 'us', 'iso646-us', 'iso-646-us', 'us_ascii', 'csascii'}
# What charset-normalizer may choose between for unlabelled 8-bit body text, and the codec that decodes each
# (the superset real mail is written in).
_DETECTED_CJK = {'gb18030': 'gb18030', 'big5': 'big5hkscs', 'shift_jis': 'cp932', 'euc_kr': 'cp949'}
_CJK_CHAR = re.compile('[\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7a3\uff01-\uff5e]')
_NON_ASCII_CHAR = re.compile('[^\x00-\x7f]')
MIN_CJK_SHARE = 0.9          # of the non-ASCII characters, for a guessed CJK decoding to be believed
MAX_DETECTION_BYTES = 65536  # the detector looks at the start of a long body; the codec then decodes all of it
_ISO2022_ESCAPE = re.compile(rb'\x1b(?:\$[@B(]|\([BJI])')
_NON_TEXT = re.compile('[\x00\ud800-\udfff]')


def _latin1_for_undefined(err: UnicodeDecodeError):
    """Error handler: bytes cp1252 leaves undefined (0x81, 0x8D, 0x8F, 0x90, 0x9D) decode as ISO-8859-1."""
    return err.object[err.start:err.end].decode('latin-1'), err.end


codecs.register_error('postdesk-latin1', _latin1_for_undefined)


@functools.lru_cache(maxsize=1024)
def lookup_charset(label) -> str | None:
    """Map a charset label from a message to a Python codec name, or None if it names nothing usable."""
    if not label or not isinstance(label, str):
        return None
    name = label.strip().strip('"\'').strip().lower()
    name = name.split('*', 1)[0]          # RFC 2231 language suffix: utf-8*en
    if name in _UNKNOWN:
        return None
    for candidate in _label_variants(name):
        if candidate in _SUPERSETS:
            return _python_codec(_SUPERSETS[candidate])
        codec = _python_codec(candidate)
        if codec:
            return _python_codec(_SUPERSETS.get(codec.replace('_', '-'), codec))
    return None


def _label_variants(name: str):
    yield name
    yield name.replace('_', '-')
    if name.startswith(('x-', 'x_')):
        yield name[2:]
    if name.startswith('cs'):
        yield name[2:]
    if name.startswith('windows') and not name.startswith('windows-'):
        yield 'windows-' + name[7:]
    if re.fullmatch(r'iso8859[-_]?\d+', name):
        yield 'iso-8859-' + re.sub(r'\D', '', name[7:])


def _python_codec(name: str) -> str | None:
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return None
    if not getattr(info, '_is_text_encoding', True) or info.name in _NOT_MAIL_CODECS:
        return None
    return info.name


def clean_text(text: str) -> str:
    """Remove NUL characters and lone surrogates, which no database column or JSON consumer accepts."""
    if _NON_TEXT.search(text):
        return _NON_TEXT.sub('', text)
    return text


def decode_western(data: bytes) -> str:
    """The last resort: Windows-1252, with its five undefined bytes taken as ISO-8859-1. Never fails."""
    return data.decode(WESTERN, 'postdesk-latin1')


def _try_decode(data: bytes, codec: str | None) -> str | None:
    if not codec:
        return None
    try:
        text = data.decode(codec)
    except (UnicodeError, LookupError, ValueError):
        return None
    return text


def looks_iso2022(data: bytes) -> bool:
    """True when 7-bit data carries ISO-2022-JP escape sequences (mail labelled us-ascii or not at all)."""
    return b'\x1b' in data and _ISO2022_ESCAPE.search(data) is not None


def decode_bytes(data: bytes, declared: str | None = None, fallbacks: Iterable[str] = (),
                 detect_cjk: bool = False) -> tuple[str, str | None]:
    """Decode `data` labelled `declared`; return the text and a defect note when a repair was needed.

    Order: the declared charset (mapped to its real superset); ISO-2022-JP if its escapes are present in 7-bit
    data; UTF-8; a declared ISO-8859-1/Windows-1252 label, which is final from here on; the declared charset's
    family; for unlabelled or `us-ascii` data only, the other charsets the message declares (`fallbacks`) and,
    with `detect_cjk` (body text, never headers), a legacy CJK encoding if the detector finds one; a lenient
    decode in the declared CJK family when only a few bytes are broken; Windows-1252. The result is free of NUL
    and lone surrogates.
    """
    codec = lookup_charset(declared)
    if data.isascii():
        if looks_iso2022(data):
            text = decode_iso2022jp(data)
            if text is not None:
                note = None if codec and codec.startswith('iso2022') else 'iso-2022-jp escapes in %s text' % (declared or 'unlabelled')
                return clean_text(text), note
        if codec == 'utf-7' or (codec is None and b'+' in data and _looks_utf7(data)):
            text = _try_decode(data, 'utf_7')
            if text is not None:
                return clean_text(text), None
        return clean_text(data.decode('ascii')), None
    text = _try_decode(data, codec) if codec != WESTERN else None
    if text is not None:
        return clean_text(text), None
    text = _try_decode(data, 'utf-8')
    if text is not None:
        return clean_text(text), _note(declared, 'utf-8')
    if codec in (None, 'utf-8', WESTERN) and mostly_utf8(data):
        return clean_text(decode_mixed_utf8(data)), _note(declared, 'utf-8 with stray windows-1252 bytes')
    unlabelled = codec is None or is_ascii_label(declared)
    if codec == WESTERN and not unlabelled:
        return clean_text(decode_western(data)), None
    candidates = _candidates(codec, fallbacks if unlabelled else ())
    multibyte = [c for c in candidates if c in _MULTIBYTE]
    for other in multibyte:
        text = _try_decode(data, other)
        if text is not None and _plausible(text):
            return clean_text(text), _note(declared, other)
    if detect_cjk and unlabelled:
        found = detect_legacy_cjk(data)
        if found is not None:
            text, used = found
            return clean_text(text), _note(declared, used)
    for other in candidates:
        text = _try_decode(data, other) if other not in multibyte else None
        if text is not None and _plausible(text):
            return clean_text(text), _note(declared, other)
    if codec in _CJK_FAMILIES:
        text = _decode_mostly(data, codec)
        if text is not None:
            return clean_text(text), 'charset %s: a few undecodable bytes dropped' % declared
    return clean_text(decode_western(data)), (None if codec == WESTERN else _note(declared, 'windows-1252'))


def is_ascii_label(label: str | None) -> bool:
    """True for the labels that claim 7-bit ASCII (`us-ascii` and its aliases)."""
    return bool(label) and label.strip().strip('"\'').strip().lower() in _ASCII_LABELS


def detect_legacy_cjk(data: bytes) -> tuple[str, str] | None:
    """Unlabelled 8-bit text in GB18030, Big5, Shift_JIS or EUC-KR: the detector's candidates in its order,
    the first whose decoding is overwhelmingly CJK characters; None when there is none (Latin text, say)."""
    sample = detection_sample(data)
    found = _detect_cjk_in(sample, data)
    if found is None and len(sample) < len(data):
        found = _detect_cjk_in(sample[:-1], data)      # the cut may have split a double-byte character
    return found


def _detect_cjk_in(sample: bytes, data: bytes) -> tuple[str, str] | None:
    from charset_normalizer import from_bytes
    for match in from_bytes(sample, cp_isolation=list(_DETECTED_CJK), preemptive_behaviour=False):
        codec = _DETECTED_CJK.get(match.encoding)
        if codec is None:
            continue
        text = _try_decode(data, codec)
        if text is None:
            text = _decode_mostly(data, codec)
        if text is not None and is_mostly_cjk(text):
            return text, match.encoding.replace('_', '-')
    return None


def detection_sample(data: bytes) -> bytes:
    """The start of long data for the detector, cut after an ASCII byte near the limit where there is one, so
    that no multi-byte character is split (a split character makes the right encoding fail the sample)."""
    if len(data) <= MAX_DETECTION_BYTES:
        return data
    window = data[MAX_DETECTION_BYTES - 256:MAX_DETECTION_BYTES]
    last_ascii = max((window.rfind(bytes([b])) for b in b'\n \r\t.,'), default=-1)
    if last_ascii < 0:
        return data[:MAX_DETECTION_BYTES]
    return data[:MAX_DETECTION_BYTES - 256 + last_ascii + 1]


def is_mostly_cjk(text: str) -> bool:
    """At least MIN_CJK_SHARE of the non-ASCII characters are CJK ideographs, kana, hangul or CJK punctuation
    (half-width katakana, box drawing, Cyrillic or Greek from a wrong multi-byte decoding do not count)."""
    sample = text[:MAX_DETECTION_BYTES]
    non_ascii = len(_NON_ASCII_CHAR.findall(sample))
    cjk = len(_CJK_CHAR.findall(sample))
    return cjk >= 2 and cjk >= non_ascii * MIN_CJK_SHARE


def _cp1252_for_invalid_utf8(err: UnicodeDecodeError):
    """Error handler: bytes that are not UTF-8 decode one by one as Windows-1252 (mixed-encoding text); a
    UTF-8 sequence cut short (a lead byte followed by part of its continuation, or last in the data) is dropped."""
    bad = err.object[err.start:err.end]
    cut_short = 0xc2 <= bad[0] <= 0xf4 and (len(bad) > 1 or err.end == len(err.object))
    return ('' if cut_short else decode_western(bad)), err.end


codecs.register_error('postdesk-cp1252', _cp1252_for_invalid_utf8)
_UTF8_MULTIBYTE = re.compile(rb'[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}')
_HIGH_BYTE = re.compile(rb'[\x80-\xff]')


def mostly_utf8(data: bytes) -> bool:
    """True when most 8-bit bytes form valid UTF-8 sequences (UTF-8 text with a few stray or cut bytes)."""
    valid_bytes = sum(len(m) for m in _UTF8_MULTIBYTE.findall(data))
    high_bytes = len(_HIGH_BYTE.findall(data))
    return valid_bytes > 0 and valid_bytes * 10 >= high_bytes * 8


def decode_mixed_utf8(data: bytes) -> str:
    """UTF-8 where the bytes are UTF-8, Windows-1252 for each byte that is not."""
    return data.decode('utf-8', 'postdesk-cp1252')


_ISO2022_SEGMENT = re.compile(rb'\x1b(\$[@B]|\([BJI]|\$\(D)')


def decode_iso2022jp(data: bytes) -> str | None:
    """ISO-2022-JP as Windows writes it (CP50220): JIS X 0208 plus the NEC and IBM extension rows, which
    Python's iso2022 codecs reject. Double-byte runs are mapped to Shift_JIS and decoded as CP932."""
    text = _try_decode(data, 'iso2022_jp_ext')
    if text is not None:
        return text
    pieces, mode, pos = [], b'(B', 0
    for match in _ISO2022_SEGMENT.finditer(data):
        pieces.append(_decode_iso2022_run(data[pos:match.start()], mode))
        mode, pos = match.group(1), match.end()
    pieces.append(_decode_iso2022_run(data[pos:], mode))
    if any(p is None for p in pieces):
        return _try_decode(data, 'iso2022_jp_2004')
    return ''.join(pieces)


def _decode_iso2022_run(run: bytes, mode: bytes) -> str | None:
    if mode in (b'(B', b'(J'):
        return run.decode('ascii', 'replace').replace('\ufffd', '')
    if mode == b'(I':
        return _try_decode(bytes(b + 0x80 for b in run if 0x21 <= b <= 0x5f), 'cp932')
    if mode == b'$(D':
        return _try_decode(b'\x1b$(D' + run, 'iso2022_jp_2')
    run = run.replace(b'\r', b'').replace(b'\n', b'')
    sjis = bytearray()
    for i in range(0, len(run) - 1, 2):
        sjis += _jis_to_sjis(run[i], run[i + 1])
    return _try_decode(bytes(sjis), 'cp932')


def _jis_to_sjis(j1: int, j2: int) -> bytes:
    s1 = ((j1 + 1) >> 1) + 0x70
    if s1 >= 0xa0:
        s1 += 0x40
    if j1 & 1:
        s2 = j2 + 0x1f + (1 if j2 >= 0x60 else 0)
    else:
        s2 = j2 + 0x7e
    return bytes((s1 & 0xff, s2 & 0xff))


def _candidates(codec: str | None, fallbacks: Iterable[str]) -> list[str]:
    """Codecs to try after the declared one and UTF-8: its family, then the message's other charsets and theirs."""
    found: list[str] = []
    for label_codec in [codec] + [lookup_charset(label) for label in fallbacks]:
        for candidate in [label_codec, *_family(label_codec)]:
            if candidate and candidate not in found and candidate not in (codec, 'utf-8', WESTERN):
                found.append(candidate)
    return found


_IMPLAUSIBLE = re.compile('[\x80-\x9f\ue000-\uf8ff]')


def _plausible(text: str) -> bool:
    """A guessed decoding is rejected when it yields C1 controls or private-use characters (bytes of another
    charset read as a multi-byte one)."""
    return _IMPLAUSIBLE.search(text) is None


def _family(codec: str | None) -> tuple[str, ...]:
    for family in _FAMILIES:
        if codec in family:
            return family
    return ()


def _decode_mostly(data: bytes, codec: str) -> str | None:
    """Decode with a multi-byte codec dropping broken bytes, if at most 1% of the input is broken."""
    text = data.decode(codec, 'replace')
    broken = text.count('\ufffd')
    if broken * 100 > max(len(text), 1):
        return None
    return text.replace('\ufffd', '')


def _looks_utf7(data: bytes) -> bool:
    return re.search(rb'\+[A-Za-z0-9/]{3,}-', data) is not None


def _note(declared: str | None, used: str) -> str:
    if declared:
        return 'charset %s does not fit the bytes; decoded as %s' % (declared, used)
    return '8-bit text without a charset; decoded as %s' % used
