"""Schemathesis against the published `/openapi.json` of a live `postdesk serve --http`: whatever it generates
(valid and invalid requests), no answer is a 5xx and none breaks the schema the server published. Bounded in
examples per operation and in time, with a fixed seed so that a run can be repeated."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import PlainTextResponse

from mails import make_message
from test_api import MAIL_PATH, client, new_agent
from test_serve import Server
from ticketing.api.app import add_routes

CHECKS = 'not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance'


def schemathesis_executable() -> str:
    found = shutil.which('schemathesis', path=os.path.dirname(sys.executable)) or shutil.which('schemathesis')
    assert found, 'schemathesis is in the test extra: pip install -e ".[test]"'
    return found


def test_no_generated_request_gets_a_5xx_or_an_answer_outside_the_schema(db_url, tmp_path, conn):
    conn.execute("INSERT INTO mailbox (address, name, is_default) VALUES ('support@helpdesk.example', 'S', true)")
    token = new_agent(conn, 'fuzzer', role='admin')
    running = Server(db_url, tmp_path, args=('--smtp', 'off', '--lmtp', 'off'))
    try:
        with client(running, token) as http:
            stored = http.post(MAIL_PATH, json={'MailboxId': 1, 'Data': make_message(
                attachments=[('a.txt', 'text/plain', b'hello')]).decode()})
            assert stored.status_code == 200
        result = subprocess.run(
            [schemathesis_executable(), 'run', 'http://127.0.0.1:%d/openapi.json' % running.http_port,
             '--checks', CHECKS, '-H', 'Authorization: Bearer %s' % token, '--max-examples', '8',
             '--max-time', '45', '--seed', '20261201', '--workers', '1', '--generation-database', 'none',
             '--generation-with-security-parameters', 'false', '--request-timeout', '20', '--no-color'],
            capture_output=True, text=True, cwd=tmp_path, timeout=120)
        assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
        with client(running) as http:
            assert http.get('/healthz').status_code == 200
    finally:
        assert running.stop() == 0
    assert not [line for line in running.lines if 'Traceback' in line], '\n'.join(running.lines[-40:])


def test_the_document_declares_its_errors_and_authentication(db_url, tmp_path, conn):
    running = Server(db_url, tmp_path, args=('--smtp', 'off', '--lmtp', 'off'))
    try:
        document = httpx.get('http://127.0.0.1:%d/openapi.json' % running.http_port).json()
    finally:
        running.stop()
    assert set(document['components']['securitySchemes']) == {'bearer', 'basic'}
    save = document['paths']['/api/v1/Agents/Ticket/SaveTicketEntity']['post']
    assert {'200', '400', '401', '404', '412', '413', '415', '503'} <= set(save['responses'])
    assert '422' not in save['responses']


def test_a_router_with_settings_of_its_own_is_not_flattened_into_the_app():
    """add_routes takes a router's routes as they are; one whose settings include_router would merge into them
    (tags, dependencies, a response class...) is refused rather than served without them."""
    def nothing() -> None:
        return None

    for router in (APIRouter(tags=['x']), APIRouter(dependencies=[Depends(nothing)]),
                   APIRouter(default_response_class=PlainTextResponse), APIRouter(include_in_schema=False)):
        router.get('/x')(nothing)
        with pytest.raises(ValueError):
            add_routes(FastAPI(), router)
    plain = APIRouter(prefix='/p')
    plain.get('/x')(nothing)
    app = FastAPI()
    add_routes(app, plain)
    assert '/p/x' in [getattr(route, 'path', None) for route in app.routes]
