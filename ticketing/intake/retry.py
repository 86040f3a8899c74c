"""Retrying the quarantine: held messages go through intake again (after a fix, or after adding the mailbox they
were for), with one intake for all of them; those that are stored now are released, the others keep the new
reason. Nothing in the quarantine is ever deleted by postdesk.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

from ..config import Config
from ..model import QUARANTINED, Outcome, SourceMessage
from ..store import quarantine
from ..store.db import Connection
from .runner import Intake


def retry(conn: Connection, config: Config, ids: list[int] | None) -> list[tuple[int, Outcome]]:
    """Run held messages (all, or those named) through intake again, each in the mailbox it was for."""
    return list(retry_each(conn, config, quarantine.held_ids(conn, ids)))


def retry_each(conn: Connection, config: Config, held: list[int],
               reconnect: Callable[[], Connection] | None = None) -> Iterator[tuple[int, Outcome]]:
    """What became of each of these held entries, one at a time (with `reconnect`, a lost connection is opened
    again)."""
    intake = Intake(conn, config, reconnect=reconnect)
    for quarantine_id in held:
        data, source, hint = intake.retried(lambda: quarantine.held_message(intake.conn, quarantine_id))
        message = SourceMessage(data, 'quarantine #%d (%s)' % (quarantine_id, source), source, mailbox=hint)
        outcome = intake.store_batch([message])[0]
        intake.retried(lambda: record_retry(intake.conn, quarantine_id, outcome))
        yield quarantine_id, outcome


def record_retry(conn: Connection, quarantine_id: int, outcome: Outcome) -> None:
    with conn.transaction():
        if outcome.outcome == QUARANTINED:
            quarantine.update_reason(conn, quarantine_id, outcome.reason)
        else:
            quarantine.release(conn, quarantine_id, outcome.interaction_id)
