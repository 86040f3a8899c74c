"""Agents' work (Genesys, seeds 001 and 004): interactions as work items in queues and workbins, offered to ready
agents and owned by one agent at a time.

Offering is a claim, as the outbox's is: the agent's row is locked with FOR UPDATE SKIP LOCKED (two processes
never offer to one agent at once, so its capacity holds) and so is the oldest queued interaction of its queues
(two agents are never offered one interaction). Every other change locks the interaction's row first and checks
its state and holder, so a change that lost a race changes nothing. Each change is audited (target `work`, the
new holder in `assigned_to`) in the same transaction.
"""
from __future__ import annotations

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from ..model import WorkItem
from ..statuses import ACCEPTED, ADMIN_ROLE, DRAFT, INVITED, QUEUED, WORK_TARGET, WorkTransition
from .rows import OutboundRow
from .writes import NOW, insert_statement

_ITEM = ('SELECT i.interaction_id, i.ticket_id, i.mailbox_id, i.direction, i.state, i.queue_id, q.name, '
         '       i.workbin_id, i.owner_id, i.invited_id, i.rejected_by, i.subject, i.from_name, i.from_email, '
         '       i.to_addresses, i.user_data, i.created_at, i.parent_id '
         'FROM interaction i LEFT JOIN queue q ON q.queue_id = i.queue_id ')
_LOAD = sql.SQL("(SELECT count(*) FROM interaction w WHERE (w.state = {invited} AND w.invited_id = a.agent_id) "
                "OR (w.state = {accepted} AND w.owner_id = a.agent_id))").format(
    invited=sql.Literal(INVITED), accepted=sql.Literal(ACCEPTED))
_QUEUED = sql.Literal(QUEUED)

# Whether the agent {agent} may see the work of mailbox {mailbox} (SQL expressions): an admin, or an agent of it.
MAY_SEE_MAILBOX = ("(EXISTS (SELECT 1 FROM agent adm WHERE adm.agent_id = {agent} AND adm.role = '%s') "
                   "OR EXISTS (SELECT 1 FROM agent_mailbox am WHERE am.agent_id = {agent} "
                   "AND am.mailbox_id = {mailbox}))" % ADMIN_ROLE)


def _item(row: tuple) -> WorkItem:
    values = list(row)
    values[10] = tuple(values[10] or ())
    values[14] = tuple(values[14] or ())
    return WorkItem(*values)


def work_item(conn: psycopg.Connection, interaction_id: int, lock: bool = False) -> WorkItem | None:
    """The interaction as a work item (None when it is not one); with lock, its row is locked until the end of
    the transaction."""
    row = conn.execute(_ITEM + 'WHERE i.interaction_id = %s AND i.state IS NOT NULL' +
                       (' FOR UPDATE OF i' if lock else ''), (interaction_id,)).fetchone()
    return _item(row) if row else None


def work_items(conn: psycopg.Connection, states: tuple[str, ...], agent_id: int | None = None) -> list[WorkItem]:
    """Work items in these states; with agent_id, only those offered to or owned by that agent."""
    rows = conn.execute(_ITEM + 'WHERE i.state = ANY(%(states)s) AND (%(agent)s::int IS NULL OR i.owner_id = '
                        '%(agent)s OR i.invited_id = %(agent)s) ORDER BY i.interaction_id',
                        {'states': list(states), 'agent': agent_id}).fetchall()
    return [_item(row) for row in rows]


def change_work(conn: psycopg.Connection, item: WorkItem, transition: WorkTransition, modifier: str,
                assigned_to: str | None, **columns) -> None:
    """Apply a transition to a locked work item: the state (when the transition has one), the columns given
    (NOW for the transaction's time), and the audit entry."""
    values = {name: value for name, value in columns.items() if value is not NOW}
    if transition.after is not None:
        values['state'] = transition.after
    assignments = sql.SQL(', ').join(
        [sql.SQL('{} = {}').format(sql.Identifier(name), sql.Placeholder(name)) for name in values] +
        [sql.SQL('{} = now()').format(sql.Identifier(name))
         for name in [n for n, value in columns.items() if value is NOW] + ['state_changed_at']])
    conn.execute(sql.SQL('UPDATE interaction SET {} WHERE interaction_id = {}').format(
        assignments, sql.Placeholder('interaction_id')), dict(values, interaction_id=item.interaction_id))
    conn.execute('INSERT INTO status_audit (ticket_id, interaction_id, action, modifier, status_before, '
                 'status_after, target, assigned_to) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)',
                 (item.ticket_id, item.interaction_id, transition.action, modifier, item.state,
                  transition.after or item.state, WORK_TARGET, assigned_to))


def user_data_json(value: dict) -> Jsonb:
    return Jsonb(value)


# ------------------------------------------------------------------------------------------------ offering

def lock_ready_agent(conn: psycopg.Connection, agent_id: int, presence_seconds: float) -> tuple[int, str] | None:
    """The agent's spare capacity and login, with its row locked (None when it is not ready and present, or
    another process is offering to it right now)."""
    row = conn.execute(sql.SQL(
        'SELECT a.capacity - {load}, a.login FROM agent a WHERE a.agent_id = %s AND a.ready AND a.active '
        "AND a.last_seen > now() - make_interval(secs => %s) FOR UPDATE SKIP LOCKED").format(load=_LOAD),
        (agent_id, presence_seconds)).fetchone()
    return (row[0], row[1]) if row else None


def available_agents(conn: psycopg.Connection, presence_seconds: float) -> list[int]:
    """Ready, present agents with spare capacity, the longest without an offer first."""
    rows = conn.execute(sql.SQL(
        'SELECT a.agent_id FROM agent a WHERE a.ready AND a.active '
        'AND a.last_seen > now() - make_interval(secs => %s) AND a.capacity > {load} '
        'AND EXISTS (SELECT 1 FROM agent_queue aq WHERE aq.agent_id = a.agent_id) '
        'ORDER BY a.last_offered_at NULLS FIRST, a.agent_id').format(load=_LOAD), (presence_seconds,)).fetchall()
    return [r[0] for r in rows]


def next_queued_for(conn: psycopg.Connection, agent_id: int, presence_seconds: float) -> WorkItem | None:
    """The oldest queued interaction of the agent's queues, locked, skipping what others hold: one it rejected
    only when no other present, ready agent of that queue with spare capacity has not rejected it."""
    row = conn.execute(sql.SQL(
        'SELECT i.interaction_id FROM interaction i JOIN agent_queue mine ON mine.queue_id = i.queue_id '
        'WHERE i.state = {queued} AND mine.agent_id = %(agent)s AND ' +
        MAY_SEE_MAILBOX.format(agent='%(agent)s', mailbox='i.mailbox_id') + ' '
        '  AND (NOT %(agent)s = ANY(i.rejected_by) OR NOT EXISTS ('
        '       SELECT 1 FROM agent a JOIN agent_queue aq ON aq.agent_id = a.agent_id '
        '       WHERE aq.queue_id = i.queue_id AND a.agent_id <> %(agent)s AND a.ready '
        '         AND a.active AND a.last_seen > now() - make_interval(secs => %(presence)s) '
        '         AND NOT a.agent_id = ANY(i.rejected_by) AND a.capacity > {load} AND ' +
        MAY_SEE_MAILBOX.format(agent='a.agent_id', mailbox='i.mailbox_id') + ')) '
        'ORDER BY (%(agent)s = ANY(i.rejected_by)), i.interaction_id LIMIT 1 FOR UPDATE OF i SKIP LOCKED').format(
        queued=_QUEUED, load=_LOAD), {'agent': agent_id, 'presence': presence_seconds}).fetchone()
    return work_item(conn, row[0]) if row else None


def note_offer(conn: psycopg.Connection, agent_id: int) -> None:
    conn.execute('UPDATE agent SET last_offered_at = now() WHERE agent_id = %s', (agent_id,))


def expired_invitations(conn: psycopg.Connection, timeout: float, limit: int = 100) -> list[WorkItem]:
    """Invitations older than `timeout` seconds, locked (skipping those another process is handling), and
    invitations to agents that are no longer ready or present."""
    rows = conn.execute(
        'SELECT i.interaction_id FROM interaction i JOIN agent a ON a.agent_id = i.invited_id '
        "WHERE i.state = %s AND (i.invited_at < now() - make_interval(secs => %s) OR NOT a.ready "
        '  OR NOT a.active) ORDER BY i.invited_at LIMIT %s FOR UPDATE OF i SKIP LOCKED',
        (INVITED, timeout, limit)).fetchall()
    return [work_item(conn, r[0]) for r in rows]


# ----------------------------------------------------------------------------------------- agents' state

def set_ready(conn: psycopg.Connection, agent_id: int, ready: bool) -> None:
    conn.execute('UPDATE agent SET ready = %s, last_seen = now() WHERE agent_id = %s', (ready, agent_id))


def mark_seen(conn: psycopg.Connection, agent_id: int) -> None:
    """The agent's client is there (any request, a CometD connect): it may be offered work while ready."""
    conn.execute('UPDATE agent SET last_seen = now() WHERE agent_id = %s '
                 "AND (last_seen IS NULL OR last_seen < now() - interval '1 second')", (agent_id,))


def agent_queue_ids(conn: psycopg.Connection, agent_id: int) -> list[int]:
    return [r[0] for r in conn.execute('SELECT queue_id FROM agent_queue WHERE agent_id = %s ORDER BY queue_id',
                                       (agent_id,)).fetchall()]


def insert_draft(conn: psycopg.Connection, row: OutboundRow, owner_id: int, parent_id: int,
                 workbin_id: int | None) -> None:
    """A reply being written: an outbound interaction that is a work item of its writer, not yet in the outbox."""
    conn.execute(insert_statement('interaction', OutboundRow), row)
    conn.execute('UPDATE interaction SET state = %s, owner_id = %s, parent_id = %s, workbin_id = %s, '
                 'state_changed_at = now() WHERE interaction_id = %s',
                 (DRAFT, owner_id, parent_id, workbin_id, row.interaction_id))


def recipients_of(conn: psycopg.Connection, interaction_id: int) -> list[str]:
    """Every address a message was sent to (To and Cc)."""
    row = conn.execute("SELECT coalesce(array(SELECT addr->>'email' FROM jsonb_array_elements(to_addresses || "
                       'cc_addresses) AS addr), \'{}\') FROM interaction WHERE interaction_id = %s',
                       (interaction_id,)).fetchone()
    return [a for a in (row[0] if row else []) if a]
