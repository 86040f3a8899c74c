"""Agents: the people who answer tickets. Their addresses take part in every ticket (the hijack guard lets an
agent continue any ticket by its subject reference).
"""
from __future__ import annotations

import psycopg


def agent_addresses(conn: psycopg.Connection) -> frozenset[str]:
    rows = conn.execute('SELECT DISTINCT lower(email) FROM agent WHERE email IS NOT NULL').fetchall()
    return frozenset(r[0] for r in rows if r[0])


_AGENT = ('SELECT a.agent_id, a.login, a.full_name, a.email, a.role, a.active, '
          '       coalesce(array(SELECT mailbox_id FROM agent_mailbox m WHERE m.agent_id = a.agent_id '
          "                      ORDER BY mailbox_id), '{}') ")


def agent_by_login_or_id(conn: psycopg.Connection, identifier: str):
    """The agent with this login, or this numeric id (Genesys' userId)."""
    from ..model import Agent
    row = conn.execute(_AGENT + 'FROM agent a WHERE a.login = %s OR a.agent_id::text = %s ORDER BY (a.login = %s) '
                       'DESC LIMIT 1', (identifier, identifier, identifier)).fetchone()
    return Agent(*row[:6], mailbox_ids=tuple(row[6])) if row else None
