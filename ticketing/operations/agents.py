"""Agents and their secrets: adding an agent with its mailboxes and a new API token, a new token for an agent
(the old one stops working), a password, disabling; and checking a token or a password.

Secrets are stored only as hashes. A password is hashed with argon2id (argon2-cffi's defaults: memory-hard, about
50 ms a check, done off the event loop). A token is 32 random bytes, so it cannot be guessed and needs no slow
hash: it is stored as HMAC-SHA256 under the server's key (configured, or generated once and kept in the
database), and a request is checked by one keyed hash and one index probe, in microseconds. Whoever reads the
agent table without the key cannot test tokens offline.
"""
from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

import argon2

from ..model import Agent
from ..statuses import AGENT_ROLES
from ..store import agents, queues
from ..store.agents import AgentExists
from ..store.db import Connection
from .mailboxes import UnknownMailbox, find_mailbox

TOKEN_PREFIX = 'pd_'
_HASHER = argon2.PasswordHasher()


class UnknownAgent(LookupError):
    """No agent has that login."""


class UnknownQueue(LookupError):
    """No queue has that name."""


class BadAgent(ValueError):
    """An agent that cannot be made: an unknown role, an empty login."""


@dataclass(frozen=True)
class NewAgent:
    login: str
    full_name: str = ''
    email: str | None = None
    role: str = 'agent'
    mailboxes: tuple[str, ...] = ()
    queues: tuple[str, ...] = ()              # the queues it is offered work from (Genesys)
    capacity: int = 1                         # interactions offered to or owned by it at once
    agent_groups: tuple[str, ...] = ()        # whose shared workbins it sees
    place_groups: tuple[str, ...] = ()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(key: str, token: str) -> bytes:
    return hmac.digest(key.encode('utf-8'), token.encode('utf-8'), 'sha256')


def server_key(conn: Connection, configured: str = '') -> str:
    """The key tokens are hashed under: the configured one, else the database's (made on first use)."""
    return configured or agents.token_key(conn, secrets.token_hex(32))


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def password_matches(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        return False
    try:
        return _HASHER.verify(password_hash, password)
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
        return False


def add_agent(conn: Connection, request: NewAgent, key: str) -> tuple[Agent, str]:
    """The new agent and its token (shown once; only its hash is kept). Raises AgentExists, UnknownMailbox,
    BadAgent."""
    if request.role not in AGENT_ROLES:
        raise BadAgent('role must be one of %s, not %r' % (', '.join(AGENT_ROLES), request.role))
    check_login(request.login.strip())
    if request.capacity < 0:
        raise BadAgent('capacity must be 0 or more, not %d' % request.capacity)
    mailbox_ids = [find_mailbox(conn, address).mailbox_id for address in request.mailboxes]
    queue_ids = [queue_named(conn, name) for name in request.queues]
    token = new_token()
    with conn.transaction():
        agent = agents.insert_agent(conn, request.login.strip(), request.full_name, request.email or None,
                                    request.role, token_hash(key, token), mailbox_ids)
        set_up_work(conn, agent.agent_id, request, queue_ids)
    return agent, token


def check_login(login: str) -> None:
    """A login an agent can sign in with: not empty, and nothing HTTP Basic's `login:secret` (RFC 7617) cannot
    carry or a shell would split: no colon, whitespace or control character. Raises BadAgent."""
    if not login:
        raise BadAgent('an agent needs a login')
    unfit = sorted({c for c in login if c == ':' or c.isspace() or not c.isprintable()})
    if unfit:
        raise BadAgent('a login cannot hold %s (HTTP Basic could not sign it in): %r' % (
            ', '.join(repr(c) for c in unfit), login))


def queue_named(conn: Connection, name: str) -> int:
    queue_id = queues.queue_id_named(conn, name)
    if queue_id is None:
        raise UnknownQueue('no queue %s (add it with `postdesk queue add %s`)' % (name, name))
    return queue_id


def set_up_work(conn: Connection, agent_id: int, request: NewAgent, queue_ids: list[int]) -> None:
    """The agent's queues, groups, capacity and own workbins (Drafts, InProgress)."""
    agents.set_capacity(conn, agent_id, request.capacity)
    for queue_id in queue_ids:
        queues.join_queue(conn, agent_id, queue_id)
    for kind, groups in (('agent', request.agent_groups), ('place', request.place_groups)):
        for group in groups:
            queues.join_group(conn, agent_id, kind, group)
    queues.ensure_agent_workbins(conn, agent_id)


def replace_token(conn: Connection, login: str, key: str) -> str:
    token = new_token()
    if not agents.set_token_hash(conn, login, token_hash(key, token)):
        raise UnknownAgent('no agent %s' % login)
    return token


def set_password(conn: Connection, login: str, password: str) -> None:
    if not password:
        raise BadAgent('the password is empty')
    if not agents.set_password_hash(conn, login, hash_password(password)):
        raise UnknownAgent('no agent %s' % login)


def disable_agent(conn: Connection, login: str) -> None:
    if not agents.disable_agent(conn, login):
        raise UnknownAgent('no agent %s' % login)


def list_agents(conn: Connection) -> list[Agent]:
    return agents.list_agents(conn)


__all__ = ['AgentExists', 'BadAgent', 'NewAgent', 'UnknownAgent', 'UnknownMailbox', 'UnknownQueue', 'add_agent', 'disable_agent',
           'hash_password', 'list_agents', 'password_matches', 'replace_token', 'server_key', 'set_password',
           'token_hash']
