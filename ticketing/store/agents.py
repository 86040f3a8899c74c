"""Agents: the people who answer tickets. Their addresses take part in every ticket (the hijack guard lets an
agent continue any ticket by its subject reference).
"""
from __future__ import annotations

import psycopg


def agent_addresses(conn: psycopg.Connection) -> frozenset[str]:
    rows = conn.execute('SELECT DISTINCT lower(email) FROM agent WHERE email IS NOT NULL').fetchall()
    return frozenset(r[0] for r in rows if r[0])
