"""Queues and workbins (Genesys, seeds 001 and 004): a mailbox's default queue, the agents of a queue, agents'
own workbins (Drafts, InProgress) and the workbins of agent groups and place groups, with their content.
"""
from __future__ import annotations

import psycopg

from ..model import WorkItem, Workbin
from .work import _ITEM, MAY_SEE_MAILBOX, _item

AGENT_WORKBINS = ('Drafts', 'InProgress')
_WORKBIN = 'SELECT workbin_id, name, agent_id, agent_group, place_group FROM workbin '


def add_queue(conn: psycopg.Connection, name: str) -> tuple[int, bool]:
    """The queue's id, and whether it was added now (adding an existing queue changes nothing)."""
    row = conn.execute('INSERT INTO queue (name) VALUES (%s) ON CONFLICT (name) DO NOTHING RETURNING queue_id',
                       (name,)).fetchone()
    if row:
        return row[0], True
    return conn.execute('SELECT queue_id FROM queue WHERE name = %s', (name,)).fetchone()[0], False


def queue_id_named(conn: psycopg.Connection, name: str) -> int | None:
    row = conn.execute('SELECT queue_id FROM queue WHERE lower(name) = lower(%s)', (name,)).fetchone()
    return row[0] if row else None


def set_mailbox_queue(conn: psycopg.Connection, mailbox_id: int, queue_id: int) -> None:
    conn.execute('UPDATE mailbox SET queue_id = %s WHERE mailbox_id = %s', (queue_id, mailbox_id))


def ensure_mailbox_queue(conn: psycopg.Connection, mailbox_id: int, address: str) -> int:
    """The mailbox's default queue; a mailbox without one gets a queue named after it."""
    row = conn.execute('SELECT queue_id FROM mailbox WHERE mailbox_id = %s', (mailbox_id,)).fetchone()
    if row and row[0] is not None:
        return row[0]
    queue_id, _ = add_queue(conn, address.lower())
    set_mailbox_queue(conn, mailbox_id, queue_id)
    return queue_id


def join_queue(conn: psycopg.Connection, agent_id: int, queue_id: int) -> None:
    conn.execute('INSERT INTO agent_queue (agent_id, queue_id) VALUES (%s, %s) ON CONFLICT DO NOTHING',
                 (agent_id, queue_id))


def join_group(conn: psycopg.Connection, agent_id: int, kind: str, group: str) -> None:
    conn.execute('INSERT INTO agent_group_member (agent_id, kind, group_name) VALUES (%s, %s, %s) '
                 'ON CONFLICT DO NOTHING', (agent_id, kind, group))


def ensure_agent_workbins(conn: psycopg.Connection, agent_id: int) -> None:
    with conn.cursor() as cur:
        cur.executemany('INSERT INTO workbin (name, agent_id) VALUES (%s, %s) ON CONFLICT DO NOTHING',
                        [(name, agent_id) for name in AGENT_WORKBINS])


def add_group_workbin(conn: psycopg.Connection, name: str, agent_group: str | None,
                      place_group: str | None) -> Workbin:
    conn.execute('INSERT INTO workbin (name, agent_group, place_group) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING',
                 (name, agent_group, place_group))
    row = conn.execute(_WORKBIN + 'WHERE name = %s AND agent_group IS NOT DISTINCT FROM %s '
                       'AND place_group IS NOT DISTINCT FROM %s', (name, agent_group, place_group)).fetchone()
    return Workbin(*row)


def workbins_of(conn: psycopg.Connection, agent_id: int) -> list[Workbin]:
    """The agent's own workbins and those of its agent and place groups."""
    rows = conn.execute(
        _WORKBIN + 'WHERE agent_id = %(agent)s OR agent_group IN (SELECT group_name FROM agent_group_member '
        "WHERE agent_id = %(agent)s AND kind = 'agent') OR place_group IN (SELECT group_name FROM "
        "agent_group_member WHERE agent_id = %(agent)s AND kind = 'place') ORDER BY workbin_id",
        {'agent': agent_id}).fetchall()
    return [Workbin(*row) for row in rows]


def workbin_members(conn: psycopg.Connection, workbin: Workbin, mailbox_id: int | None = None) -> list[int]:
    """The agents who see a workbin: its own agent, or the members of its group; with a mailbox, only those who
    may see that mailbox's work."""
    if workbin.agent_id is not None:
        members = 'SELECT %(agent)s::int AS agent_id'
    else:
        members = 'SELECT agent_id FROM agent_group_member WHERE kind = %(kind)s AND group_name = %(group)s'
    kind, group = ('agent', workbin.agent_group) if workbin.agent_group else ('place', workbin.place_group)
    visible = MAY_SEE_MAILBOX.format(agent='m.agent_id', mailbox='%(mailbox)s')
    rows = conn.execute('SELECT m.agent_id FROM (' + members + ') m WHERE %(mailbox)s::int IS NULL OR ' + visible +
                        ' ORDER BY m.agent_id', {'agent': workbin.agent_id, 'kind': kind, 'group': group,
                                                'mailbox': mailbox_id}).fetchall()
    return [r[0] for r in rows]


def queue_serves_mailbox(conn: psycopg.Connection, queue_id: int, mailbox_id: int) -> bool:
    """Whether work of the mailbox may go to the queue: any queue but the default queue of other mailboxes only
    (a mailbox's own queue takes its mailbox's work)."""
    return conn.execute(
        'SELECT EXISTS (SELECT 1 FROM mailbox WHERE queue_id = %(queue)s AND mailbox_id = %(mailbox)s) '
        'OR NOT EXISTS (SELECT 1 FROM mailbox WHERE queue_id = %(queue)s)',
        {'queue': queue_id, 'mailbox': mailbox_id}).fetchone()[0]


def workbin_by_id(conn: psycopg.Connection, workbin_id: int) -> Workbin | None:
    row = conn.execute(_WORKBIN + 'WHERE workbin_id = %s', (workbin_id,)).fetchone()
    return Workbin(*row) if row else None


def next_request_reference(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT nextval('workbin_request_seq')").fetchone()[0]


def workbin_content(conn: psycopg.Connection, workbin_id: int) -> list[WorkItem]:
    rows = conn.execute(_ITEM + 'WHERE i.workbin_id = %s AND i.state IS NOT NULL ORDER BY i.interaction_id',
                        (workbin_id,)).fetchall()
    return [_item(row) for row in rows]
