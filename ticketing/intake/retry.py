"""Retrying the quarantine: held messages go through intake again (after a fix, or after adding the mailbox they
were for), with one intake for all of them; those that are stored now are released, the others keep the new
reason. Nothing in the quarantine is ever deleted by postdesk.
"""
from __future__ import annotations

from ..config import Config
from ..model import QUARANTINED, Outcome, SourceMessage
from ..store import quarantine
from ..store.db import Connection
from .runner import Intake


def retry(conn: Connection, config: Config, ids: list[int] | None) -> list[tuple[int, Outcome]]:
    """Run held messages (all, or those named) through intake again, each in the mailbox it was for."""
    intake = Intake(conn, config)
    results = []
    for quarantine_id in quarantine.held_ids(conn, ids):
        data, source, hint = quarantine.held_message(conn, quarantine_id)
        message = SourceMessage(data, 'quarantine #%d (%s)' % (quarantine_id, source), source, mailbox=hint)
        outcome = intake.store_batch([message])[0]
        record_retry(conn, quarantine_id, outcome)
        results.append((quarantine_id, outcome))
    return results


def record_retry(conn: Connection, quarantine_id: int, outcome: Outcome) -> None:
    with conn.transaction():
        if outcome.outcome == QUARANTINED:
            quarantine.update_reason(conn, quarantine_id, outcome.reason)
        else:
            quarantine.release(conn, quarantine_id, outcome.interaction_id)
