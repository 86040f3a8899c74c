"""Queues and workbins as an operator sets them up: a queue (optionally a mailbox's default queue, where its new
mail waits for agents), and the shared workbins of agent groups and place groups (Genesys, seeds 001, 004)."""
from __future__ import annotations

from ..model import Workbin
from ..store import queues
from ..store.db import Connection
from .mailboxes import find_mailbox


def add_queue(conn: Connection, name: str, mailbox: str | None = None) -> tuple[int, bool]:
    """The queue's id, and whether it was added now; with `mailbox`, it becomes that mailbox's default queue."""
    if not name.strip():
        raise ValueError('a queue needs a name')
    with conn.transaction():
        queue_id, added = queues.add_queue(conn, name.strip())
        if mailbox:
            queues.set_mailbox_queue(conn, find_mailbox(conn, mailbox).mailbox_id, queue_id)
    return queue_id, added


def add_workbin(conn: Connection, name: str, agent_group: str | None, place_group: str | None) -> Workbin:
    if not name.strip() or not (agent_group or place_group) or (agent_group and place_group):
        raise ValueError('a workbin needs a name and one agent group or place group')
    with conn.transaction():
        return queues.add_group_workbin(conn, name.strip(), agent_group, place_group)
