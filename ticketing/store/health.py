"""The pipeline's figures for an operator (`postdesk status`): spool backlog, quarantine, outbox and deliveries,
the schema version; one statement, each figure an index probe or a count over a partial index where the table
can grow without bound.
"""
from __future__ import annotations

import psycopg
from psycopg import sql

from ..model import PipelineFigures
from ..statuses import HELD, OUTBOX_FAILED, OUTBOX_QUEUED, OUTBOX_SENT, SPOOL_PENDING

_FIGURES = sql.SQL(
    'SELECT (SELECT count(*) FROM raw_message WHERE state = {pending}), '
    '       extract(epoch FROM now() - (SELECT received_at FROM raw_message WHERE state = {pending} '
    '                                   ORDER BY raw_id LIMIT 1)), '
    '       (SELECT count(*) FROM quarantine WHERE state = {held}), '
    '       (SELECT count(*) FROM outbox WHERE state = {queued}), '
    '       (SELECT count(*) FROM outbox WHERE state = {failed}), '
    '       extract(epoch FROM now() - (SELECT min(queued_at) FROM outbox WHERE state = {queued})), '
    "       (SELECT count(*) FROM outbox WHERE state = {sent} AND sent_at > now() - interval '1 hour'), "
    "       (SELECT value FROM postdesk_meta WHERE key = 'schema_sha256')").format(
    pending=sql.Literal(SPOOL_PENDING), held=sql.Literal(HELD), queued=sql.Literal(OUTBOX_QUEUED),
    failed=sql.Literal(OUTBOX_FAILED), sent=sql.Literal(OUTBOX_SENT))


def pipeline_figures(conn: psycopg.Connection) -> PipelineFigures:
    pending, waited, held, queued, failed, oldest, sent, version = conn.execute(_FIGURES).fetchone()
    return PipelineFigures(pending, float(waited) if waited is not None else None, held, queued, failed,
                           float(oldest) if oldest is not None else None, sent, version)
