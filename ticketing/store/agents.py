"""Agents: the people who answer tickets. Their addresses take part in every ticket (the hijack guard lets an
agent continue any ticket by its subject reference). For the HTTP API: agents with their role and mailboxes,
their secrets as hashes (see schema.sql), the server's token key, and the round robin that picks the agent a
ticket is assigned to.
"""
from __future__ import annotations

import psycopg

from ..model import Agent
from ..statuses import ACTIVE

TOKEN_KEY = 'api_token_key'
ROUND_ROBIN_LOCK = 8_317_224_052          # pg_advisory_xact_lock(key, mailbox_id): one pick per mailbox at a time

_AGENT = ('SELECT a.agent_id, a.login, a.full_name, a.email, a.role, a.active, '
          '       coalesce(array(SELECT mailbox_id FROM agent_mailbox m WHERE m.agent_id = a.agent_id '
          '                      ORDER BY mailbox_id), \'{}\') ')
_BY_TOKEN = _AGENT + 'FROM agent a WHERE a.token_hash = %s'
_BY_LOGIN = _AGENT + ', a.password_hash, a.token_hash FROM agent a WHERE a.login = %s'


class AgentExists(Exception):
    """An agent with that login exists already."""


def agent_addresses(conn: psycopg.Connection) -> frozenset[str]:
    rows = conn.execute('SELECT DISTINCT lower(email) FROM agent WHERE email IS NOT NULL').fetchall()
    return frozenset(r[0] for r in rows if r[0])


def _agent(row) -> Agent:
    return Agent(*row[:6], mailbox_ids=tuple(row[6]))


def insert_agent(conn: psycopg.Connection, login: str, full_name: str, email: str | None, role: str,
                 token_hash: bytes, mailbox_ids: list[int]) -> Agent:
    """A new agent with its token and mailboxes, in one transaction. Raises AgentExists."""
    try:
        with conn.transaction():
            agent_id = conn.execute(
                'INSERT INTO agent (login, full_name, email, role, token_hash, token_created_at) '
                'VALUES (%s, %s, %s, %s, %s, now()) RETURNING agent_id',
                (login, full_name, email, role, token_hash)).fetchone()[0]
            with conn.cursor() as cur:
                cur.executemany('INSERT INTO agent_mailbox (agent_id, mailbox_id) VALUES (%s, %s) '
                                'ON CONFLICT DO NOTHING', [(agent_id, m) for m in mailbox_ids])
    except psycopg.errors.UniqueViolation as exc:
        raise AgentExists('agent %s exists already' % login) from exc
    return Agent(agent_id, login, full_name, email, role, True, tuple(sorted(set(mailbox_ids))))


def list_agents(conn: psycopg.Connection) -> list[Agent]:
    return [_agent(row) for row in conn.execute(_AGENT + 'FROM agent a ORDER BY a.agent_id').fetchall()]


def set_token_hash(conn: psycopg.Connection, login: str, token_hash: bytes) -> bool:
    """Replace the agent's token (the old one stops working at once). False: no such agent."""
    return conn.execute('UPDATE agent SET token_hash = %s, token_created_at = now() WHERE login = %s',
                        (token_hash, login)).rowcount == 1


def set_password_hash(conn: psycopg.Connection, login: str, password_hash: str) -> bool:
    return conn.execute('UPDATE agent SET password_hash = %s WHERE login = %s',
                        (password_hash, login)).rowcount == 1


def disable_agent(conn: psycopg.Connection, login: str) -> bool:
    """The agent can no longer sign in; its tickets, audit entries and mailboxes stay."""
    return conn.execute('UPDATE agent SET active = false WHERE login = %s', (login,)).rowcount == 1


def token_key(conn: psycopg.Connection, candidate: str) -> str:
    """The server's key for token hashes: the one stored, or `candidate`, stored now (the first caller wins)."""
    conn.execute('INSERT INTO postdesk_meta (key, value) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING',
                 (TOKEN_KEY, candidate))
    return conn.execute('SELECT value FROM postdesk_meta WHERE key = %s', (TOKEN_KEY,)).fetchone()[0]


async def agent_by_token(conn: psycopg.AsyncConnection, token_hash: bytes) -> Agent | None:
    cursor = await conn.execute(_BY_TOKEN, (token_hash,))
    row = await cursor.fetchone()
    return _agent(row) if row else None


async def agent_by_login(conn: psycopg.AsyncConnection, login: str) -> tuple[Agent, str | None, bytes | None] | None:
    """The agent with its password hash and token hash, to check a Basic credential against."""
    cursor = await conn.execute(_BY_LOGIN, (login,))
    row = await cursor.fetchone()
    if row is None:
        return None
    return _agent(row), row[7], bytes(row[8]) if row[8] is not None else None


def active_agent(conn: psycopg.Connection, agent_id: int) -> Agent | None:
    row = conn.execute(_AGENT + 'FROM agent a WHERE a.agent_id = %s AND a.active', (agent_id,)).fetchone()
    return _agent(row) if row else None


def pick_round_robin(conn: psycopg.Connection, mailbox_id: int) -> Agent | None:
    """The mailbox's active agent with the fewest open tickets (the lowest id among equals), chosen under a
    per-mailbox lock held until the transaction ends, so that concurrent picks each see the ones before them.
    Call in a transaction."""
    conn.execute('SELECT pg_advisory_xact_lock(%s::int4, %s::int4)', (ROUND_ROBIN_LOCK % 2 ** 31, mailbox_id))
    row = conn.execute(
        _AGENT + 'FROM agent a JOIN agent_mailbox am ON am.agent_id = a.agent_id AND am.mailbox_id = %s '
        'WHERE a.active ORDER BY (SELECT count(*) FROM ticket t WHERE t.owned_by = a.agent_id '
        '                          AND t.base_status = %s), a.agent_id LIMIT 1', (mailbox_id, ACTIVE)).fetchone()
    return _agent(row) if row else None


def agent_by_login_or_id(conn: psycopg.Connection, identifier: str) -> Agent | None:
    """The agent with this login, or this numeric id (Genesys' userId)."""
    row = conn.execute(_AGENT + 'FROM agent a WHERE a.login = %s OR a.agent_id::text = %s ORDER BY (a.login = %s) '
                       'DESC LIMIT 1', (identifier, identifier, identifier)).fetchone()
    return _agent(row) if row else None


def set_capacity(conn: psycopg.Connection, agent_id: int, capacity: int) -> None:
    conn.execute('UPDATE agent SET capacity = %s WHERE agent_id = %s', (capacity, agent_id))
