"""How dates are written in JSON: ISO 8601 as PostgreSQL gives them, or in the zone a client asked for
(SuperOffice, its SO-TimeZone header), and UTC with a `Z` (iService)."""
from __future__ import annotations

import datetime


def iso(value: datetime.datetime | None, zone: datetime.tzinfo | None = None) -> str | None:
    """The date in `zone`; in the zone it has when `zone` cannot show it (a date at the end of the calendar)."""
    if not value:
        return None
    try:
        return (value.astimezone(zone) if zone is not None else value).isoformat()
    except (OverflowError, ValueError):
        return value.isoformat()


def utc_z(value: datetime.datetime | None) -> str | None:
    return value.astimezone(datetime.timezone.utc).isoformat().replace('+00:00', 'Z') if value else None


def ms_date(value: datetime.datetime) -> str:
    """The `/Date(milliseconds)/` form of .NET's JSON serialiser (iService's timeStamp)."""
    return '/Date(%d)/' % int(value.timestamp() * 1000)


def minutes_between(start: datetime.datetime | None, end: datetime.datetime | None) -> int | None:
    if start is None or end is None:
        return None
    return int((end - start).total_seconds() // 60)
