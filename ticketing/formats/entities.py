"""Reading what clients send in SuperOffice's shapes (seed 002): a TicketEntity into the save it asks for, a list's
`$filter`, `$top` and `$skip`, and the ETag of a ticket (its latest change) with If-Match against it. Read-only
and computed fields (NumMessages, CreatedAt, ActiveStatusMonitorId, ...) are ignored, as SuperOffice ignores them; a null for an object field
(OwnedBy, Category, Person, ...) means "not given", as in the seed's sample request.
"""
from __future__ import annotations

import datetime
import re

from ..model import Tag, TicketFilter, TicketRecord, TicketSave
from ..statuses import base_status_named, ticket_status_named

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
# The dates a client may give: wide enough for any deadline or sync point, narrow enough that every zone of
# SO-TimeZone can show them (Python's datetime ends at the years 1 and 9999).
EARLIEST = datetime.datetime(1900, 1, 1, tzinfo=datetime.timezone.utc)
LATEST = datetime.datetime(9000, 1, 1, tzinfo=datetime.timezone.utc)
_MICROSECOND = datetime.timedelta(microseconds=1)


class BadEntity(ValueError):
    """A field of the entity that postdesk cannot read (an unknown status, a date that is not ISO 8601)."""


def etag(ticket: TicketRecord) -> str:
    return '"%d"' % ((ticket.last_changed - _EPOCH) // _MICROSECOND)


def etag_unchanged(if_none_match: str | None, ticket: TicketRecord) -> bool:
    """If-None-Match (RFC 9110 13.1.2): `*`, or one of the listed tags equals the ticket's by the weak comparison
    (W/ set aside): the client's copy is current."""
    if not if_none_match:
        return False
    current = etag(ticket)
    tags = [tag.strip() for tag in if_none_match.split(',')]
    return any(tag == '*' or tag.removeprefix('W/') == current for tag in tags)


def etag_matches(if_match: str, ticket: TicketRecord) -> bool:
    """If-Match (RFC 9110 13.1.1): `*`, or one of the listed tags equals the ticket's by the strong comparison
    (a weak tag, W/"...", never matches)."""
    current = etag(ticket)
    for tag in if_match.split(','):
        tag = tag.strip()
        if tag == '*' or tag == current:
            return True
    return False


NAME_KEYS = ('Name', 'Value', 'Fullname', 'FullName', 'Status')


def name_of(value, field: str) -> str | None:
    """A list item given as a string, or as an object with a Name (SuperOffice's entities); None for null or an
    object that names nothing (`{"Id": 5}`: not given). Raises BadEntity for a name that is not a string."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict):
        for key in NAME_KEYS:
            if isinstance(value.get(key), str):
                return value[key]
            if value.get(key) is not None:
                raise BadEntity('%s.%s must be a string' % (field, key))
        return None
    raise BadEntity('%s must be a string or an object with a Name' % field)


def tag_of(value) -> Tag:
    """One of Tags: a name, or the seed's object with an Id, a Name or both, and perhaps a ToolTip. Raises
    BadEntity."""
    if isinstance(value, str):
        return Tag(None, value.strip())
    if not isinstance(value, dict):
        raise BadEntity('every tag of Tags is a string or an object with an Id or a Name')
    tag_id, name, tooltip = value.get('Id'), value.get('Name'), value.get('ToolTip')
    if tag_id is not None and (isinstance(tag_id, bool) or not isinstance(tag_id, int) or not 0 < tag_id < 2 ** 31):
        raise BadEntity('Tags[].Id must be the number of a tag')
    for key, given in (('Name', name), ('ToolTip', tooltip)):
        if given is not None and not isinstance(given, str):
            raise BadEntity('Tags[].%s must be a string' % key)
    if tag_id is None and name is None:
        raise BadEntity('every tag of Tags is a string or an object with an Id or a Name')
    return Tag(tag_id, name.strip() if name is not None else None, (tooltip or '').strip())


def date_of(value, field: str) -> datetime.datetime | None:
    if value is None or value == '':
        return None
    try:
        parsed = datetime.datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise BadEntity('%s is not an ISO 8601 date: %r' % (field, value)) from exc
    parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.timezone.utc)
    try:
        within = EARLIEST <= parsed <= LATEST
    except OverflowError:
        within = False
    if not within:
        raise BadEntity('%s must lie between the years 1900 and 9000: %r' % (field, value))
    return parsed


def status_changes(entity: dict) -> dict:
    changes = {}
    if entity.get('BaseStatus') is not None:
        base = base_status_named(str(entity['BaseStatus']))
        if base is None:
            raise BadEntity('unknown BaseStatus %r' % entity['BaseStatus'])
        changes['base_status'] = base
    status_name = name_of(entity.get('Status'), 'Status')
    if status_name is not None:
        status = ticket_status_named(status_name)
        if status is None:
            raise BadEntity('unknown Status %r' % status_name)
        changes['status'] = status
    return changes


def owner_of(value) -> int | None:
    if not isinstance(value, dict):
        return None
    owner = value.get('AssociateId', value.get('Id'))
    if owner is None:
        return None
    if isinstance(owner, bool) or not isinstance(owner, int):
        raise BadEntity('OwnedBy.AssociateId must be a number')
    return owner


def field_changes(entity: dict) -> dict:
    changes = {}
    if isinstance(entity.get('Title'), str):
        changes['title'] = entity['Title'].strip()
        if not changes['title']:
            raise BadEntity('Title cannot be empty')
    for key, column in (('Category', 'category'), ('Priority', 'priority')):
        named = name_of(entity.get(key), key)
        if named is not None:
            changes[column] = named
    owner = owner_of(entity.get('OwnedBy'))
    if owner is not None:
        changes['owned_by'] = owner
    if isinstance(entity.get('Tags'), list):
        changes['tags'] = tuple(tag for tag in map(tag_of, entity['Tags']) if tag.tag_id is not None or tag.name)
    if 'Deadline' in entity:
        changes['deadline'] = date_of(entity['Deadline'], 'Deadline')
    if 'ConnectId' in entity:
        changes['connect_id'] = entity['ConnectId'] or None
    if isinstance(entity.get('CustomFields'), dict):
        changes['custom_fields'] = entity['CustomFields']
    return changes


def person_of(entity: dict) -> tuple[str | None, str]:
    person = entity.get('Person') if isinstance(entity.get('Person'), dict) else {}
    for key in ('FullName', 'Firstname', 'Lastname', 'Email', 'EmailName'):
        if person.get(key) is not None and not isinstance(person[key], str):
            raise BadEntity('Person.%s must be a string' % key)
    name = person.get('FullName') or ' '.join(p for p in (person.get('Firstname'), person.get('Lastname')) if p)
    email = person.get('Email') or person.get('EmailName') or None
    return email, name or ''


def ticket_save(entity: dict) -> TicketSave:
    """What a SaveTicketEntity request asks for. Raises BadEntity."""
    email, name = person_of(entity)
    from_address = entity.get('FromAddress') if isinstance(entity.get('FromAddress'), str) else None
    mailbox_id = entity.get('MailboxId')
    if mailbox_id is not None and (isinstance(mailbox_id, bool) or not isinstance(mailbox_id, int)):
        raise BadEntity('MailboxId must be a number')
    return TicketSave(entity.get('TicketId') or None, {**field_changes(entity), **status_changes(entity)},
                      email, name, from_address or None, mailbox_id)


MAX_TOP = 500
_AND = re.compile(r'\s+and\s+', re.I)
_CLAUSE = re.compile(r'^\s*(\w+)\s+(eq|gt)\s+(.+?)\s*$', re.I)
_FILTERS = {('basestatus', 'eq'): 'base_status', ('ownedby', 'eq'): 'owned_by', ('mailboxid', 'eq'): 'mailbox_id',
            ('lastchanged', 'gt'): 'changed_after'}


def literal(value: str) -> str:
    """A $filter value: bare, 'quoted', or datetime'quoted'."""
    value = value.strip()
    if value.lower().startswith('datetime'):
        value = value[8:]
    if len(value) >= 2 and value[0] == value[-1] == "'":
        value = value[1:-1].replace("''", "'")
    return value


def filter_value(name: str, value: str, field: str):
    """The value of a $filter clause on `name`; `field` is how the client named it, for its error."""
    if name == 'base_status':
        base = base_status_named(value)
        if base is None:
            raise BadEntity('unknown BaseStatus %r in $filter' % value)
        return base
    if name == 'changed_after':
        return date_of(value.replace(' ', '+'), 'LastChanged')    # a + of the offset, decoded as a space
    if not re.fullmatch(r'-?[0-9]{1,18}', value):
        raise BadEntity('%s in $filter must be a number' % field)
    return int(value)


def ticket_filter(text: str | None, top: int | None, skip: int | None) -> TicketFilter:
    """`$filter=BaseStatus eq 'Active' and LastChanged gt 2026-11-16T09:00:00Z`, `$top` (at most 500), `$skip`.
    Raises BadEntity."""
    wanted = {}
    for clause in _AND.split(text.strip()) if text and text.strip() else ():
        found = _CLAUSE.match(clause)
        name = _FILTERS.get((found.group(1).lower(), found.group(2).lower())) if found else None
        if name is None:
            raise BadEntity('$filter supports BaseStatus eq, OwnedBy eq, MailboxId eq and LastChanged gt, '
                            'joined by and; not %r' % clause)
        wanted[name] = filter_value(name, literal(found.group(3)), found.group(1))
    return TicketFilter(top=min(MAX_TOP, 100 if top is None else top), skip=skip or 0, **wanted)
