"""Queueing an outgoing message again (`postdesk outbox retry`): a failed or waiting message is due now, with a
fresh max_age; a sent one is left alone, as sending it again would be a second copy."""
from __future__ import annotations

from ..model import OutboxEntry
from ..statuses import SYSTEM_MODIFIER
from ..store import outbox
from ..store.db import Connection


def retry_outbox(conn: Connection, outbox_id: int, modifier: str = SYSTEM_MODIFIER) -> OutboxEntry | None:
    """The entry after the change; None when there is no such message."""
    return outbox.requeue(conn, outbox_id, modifier)
