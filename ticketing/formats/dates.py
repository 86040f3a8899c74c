"""How dates are written in JSON: ISO 8601 as PostgreSQL gives them (SuperOffice), and UTC with a `Z` (iService)."""
from __future__ import annotations

import datetime


def iso(value: datetime.datetime | None) -> str | None:
    return value.isoformat() if value else None


def utc_z(value: datetime.datetime | None) -> str | None:
    return value.astimezone(datetime.timezone.utc).isoformat().replace('+00:00', 'Z') if value else None


def ms_date(value: datetime.datetime) -> str:
    """The `/Date(milliseconds)/` form of .NET's JSON serialiser (iService's timeStamp)."""
    return '/Date(%d)/' % int(value.timestamp() * 1000)
