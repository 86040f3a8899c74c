"""Subject references and bare subjects, iService style (seed 000, sendleaveopen): a reply's subject is
`Re: [ref#: T-I] bare subject`, where T is the ticket (thread) and I the interaction.

The bare subject is the subject with every reply or forward prefix (`Re:`, `RE:`, `AW:`, `SV:`, `VS:`, `Fwd:`,
`Fw:`, `RE[2]:` and the other languages' forms, in any number and order) and every `[ref#: ...]` tag removed,
white space collapsed. References are found case-insensitively and tolerant of spacing; the last one wins.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

NO_SUBJECT = '(no subject)'

# Reply and forward prefixes of mail programs in many languages (Outlook translates them): English, German
# (AW, WG), Nordic (SV, VS, VB, VL), Dutch (Antw, Doorst), Polish (Odp, PD), Italian (R, I, Rif), Spanish and
# Portuguese (RV, RES, ENC), French (TR), Turkish (YNT, ILT), Chinese.
_PREFIX_WORDS = (r'(?:re|aw|sv|vs|vb|vl|fwd|fw|wg|tr|antw|doorst|odp|pd|rv|res|enc|rif|r|i|ynt|ilt|'
                 r'回复|答复|转发|回覆|轉寄)')
_PREFIX = re.compile(r'^\s*(?:' + _PREFIX_WORDS + r'\s*(?:\[\d+\]|\(\d+\)|\^\d+)?\s*[:：]\s*)', re.I)
_REF_TAG = re.compile(r'\[\s*ref\s*#\s*:?\s*[^\]]*\]', re.I)
# A prefix behind tags a mail gateway or list put in front ('[EXTERNAL] Re: question'): the tags stay, the
# prefix goes, so that a reply does not read 'Re: [EXTERNAL] Re: question'.
_TAGGED_PREFIX = re.compile(r'^((?:\[[^\]]{1,60}\]\s*)+)' + _PREFIX.pattern[1:], re.I)
_REF = re.compile(r'\[\s*ref\s*#\s*:?\s*(\d{1,18})\s*-\s*(\d{1,18})\s*\]', re.I)
_SPACES = re.compile(r'\s+')


@dataclass(frozen=True)
class SubjectRef:
    ticket_id: int
    interaction_id: int

    def __str__(self) -> str:
        return format_ref(self.ticket_id, self.interaction_id)


def format_ref(ticket_id: int, interaction_id: int) -> str:
    return '[ref#: %d-%d]' % (ticket_id, interaction_id)


def find_ref(subject: str | None) -> SubjectRef | None:
    """The last `[ref#: T-I]` in a subject, or None."""
    found = None
    for found in _REF.finditer(subject or ''):
        pass
    if found is None:
        return None
    return SubjectRef(int(found.group(1)), int(found.group(2)))


def bare_subject(subject: str | None) -> str:
    """The subject without reply/forward prefixes and reference tags; '' when nothing is left."""
    text = _REF_TAG.sub(' ', subject or '')
    text = _SPACES.sub(' ', text).strip()
    while True:
        stripped = _PREFIX.sub('', text, count=1)
        stripped = _TAGGED_PREFIX.sub(r'\1', stripped, count=1)
        stripped = _SPACES.sub(' ', _REF_TAG.sub(' ', stripped)).strip()
        if stripped == text:
            return text
        text = stripped


def title_from_subject(subject: str | None) -> str:
    """A ticket title: the bare subject, or '(no subject)'."""
    return bare_subject(subject) or NO_SUBJECT


def reply_subject(subject: str | None, ref: SubjectRef | None) -> str:
    """`Re: [ref#: T-I] bare` with a reference, `Re: bare` without; never two tags, never `Re: Re:`."""
    bare = bare_subject(subject) or NO_SUBJECT
    if ref is None:
        return 'Re: %s' % bare
    return 'Re: %s %s' % (ref, bare)
