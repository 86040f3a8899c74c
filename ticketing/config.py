"""Configuration, read once at start: an optional TOML file (`--config` or POSTDESK_CONFIG) and environment
variables, which win over the file. Every setting has a default that works on a developer's machine.

    [database]
    url = "postgresql://postdesk@127.0.0.1/postdesk"   # DATABASE_URL; unset = embedded PostgreSQL
    embedded_data = "/var/tmp/postdesk-0/pgdata"      # POSTDESK_PGDATA

    [intake]
    max_message_bytes = 26214400                      # POSTDESK_MAX_MESSAGE_BYTES
    batch_size = 100
    max_crashes = 3                                   # POSTDESK_MAX_CRASHES; a message that killed the intake
                                                      # worker this many times is quarantined

    [tickets]
    url_template = "http://localhost:8080/tickets/{ticket_id}"   # POSTDESK_TICKET_URL

    [server]                                          # postdesk serve
    smtp = "127.0.0.1:2525"                           # POSTDESK_SMTP_LISTEN; "" = no SMTP listener
    lmtp = "127.0.0.1:2424"                           # POSTDESK_LMTP_LISTEN; or "unix:/run/postdesk/lmtp.sock"
    http = "127.0.0.1:8080"                           # POSTDESK_HTTP_LISTEN; "off" = no HTTP API
    http_max_body_bytes = 52494336                    # POSTDESK_HTTP_MAX_BODY; larger bodies get 413 (default:
                                                      # twice max_message_bytes and 64 KB)
    http_pool_size = 8                                # the API's database connections (each pool)
    api_token_key = "..."                             # POSTDESK_API_TOKEN_KEY; unset: a key kept in the database
    metrics_token = "..."                             # POSTDESK_METRICS_TOKEN; /metrics off loopback needs it
    hostname = "helpdesk.example.com"                 # POSTDESK_HOSTNAME; banner and Received: header
    max_sessions = 100
    idle_timeout = 300                                # seconds without a command, or without a byte in DATA
    min_data_rate = 1024                              # bytes/s during DATA, averaged over data_rate_window
    data_rate_window = 60                             # seconds
    max_transaction_time = 3600                       # seconds from MAIL FROM to the end of DATA
    tls_cert = "/etc/postdesk/cert.pem"               # both set: STARTTLS is offered
    tls_key = "/etc/postdesk/key.pem"
    intake_workers = 1
    shutdown_grace = 30                               # seconds to let transactions in flight finish

    [relay]                                           # outgoing replies (postdesk deliver, postdesk serve)
    host = "smtp.example.com"                         # POSTDESK_SMTP_RELAY=HOST:PORT sets host and port
    port = 587
    starttls = true                                   # POSTDESK_SMTP_STARTTLS
    username = "postdesk"                             # POSTDESK_SMTP_USERNAME
    password = "secret"                               # POSTDESK_SMTP_PASSWORD
    timeout = 30                                      # seconds per SMTP command

    [outbound]
    retry_base = 60                                   # seconds before the first retry; doubled each time
    retry_max = 3600                                  # longest pause between retries
    max_age = 259200                                  # give up (failed) after this many seconds (3 days)
    delivery_workers = 1
    ack_per_hour = 10                                 # auto-acknowledgements per recipient per hour
    timezone = "UTC"                                  # for the "On <date>, <name> wrote:" line of replies

    [logging]
    format = "text"                                   # POSTDESK_LOG_FORMAT, --log-format; "json": JSON Lines

    [agents]                                          # Genesys interactions
    invitation_timeout = 30                           # POSTDESK_INVITATION_TIMEOUT: seconds to accept an offer
    presence = 60                                     # POSTDESK_AGENT_PRESENCE: an agent not seen for longer
                                                      # is offered nothing
    [notifications]                                   # CometD
    session_ttl = 120                                 # POSTDESK_NOTIFICATION_TTL: a client may reconnect within
    long_poll = 25                                    # POSTDESK_LONG_POLL: seconds a /meta/connect waits
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields

from ingest.parse import MAX_MESSAGE_BYTES


class ConfigError(ValueError):
    """The configuration file or an environment variable has a value postdesk cannot use."""


def default_embedded_data() -> str:
    """Where the embedded PostgreSQL keeps its data when no DATABASE_URL is set: a per-user folder under
    /var/tmp, whose parents are already world-traversable (pgserver, run as root, opens every parent folder)."""
    return '/var/tmp/postdesk-%d/pgdata' % os.getuid()


@dataclass(frozen=True)
class Config:
    database_url: str | None = None
    embedded_data: str = field(default_factory=default_embedded_data)
    max_message_bytes: int = MAX_MESSAGE_BYTES
    batch_size: int = 100
    max_crashes: int = 3
    ticket_url_template: str = 'http://localhost:8080/tickets/{ticket_id}'
    smtp_listen: str = '127.0.0.1:2525'
    lmtp_listen: str = '127.0.0.1:2424'
    http_listen: str = '127.0.0.1:8080'
    http_max_body_bytes: int = 0         # 0: twice max_message_bytes and 64 KB (a message as a JSON string)
    http_pool_size: int = 8
    api_token_key: str = ''
    metrics_token: str = ''
    hostname: str = ''
    max_sessions: int = 100
    idle_timeout: float = 300.0
    min_data_rate: float = 1024.0
    data_rate_window: float = 60.0
    max_transaction_time: float = 3600.0
    tls_cert: str = ''
    tls_key: str = ''
    intake_workers: int = 1
    shutdown_grace: int = 30
    database_timeout: int = 5
    relay_host: str = ''
    relay_port: int = 25
    relay_starttls: bool = False
    relay_username: str = ''
    relay_password: str = ''
    relay_timeout: int = 30
    retry_base: float = 60.0
    retry_max: float = 3600.0
    max_delivery_age: int = 259200
    delivery_workers: int = 1
    ack_per_hour: int = 10
    timezone: str = 'UTC'
    log_format: str = 'text'
    invitation_timeout: float = 30.0
    agent_presence: float = 60.0
    notification_session_ttl: float = 120.0
    long_poll_seconds: float = 25.0

    def http_body_limit(self) -> int:
        return self.http_max_body_bytes or 2 * self.max_message_bytes + 65536

    def ticket_url(self, ticket_id: int) -> str:
        return self.ticket_url_template.format(ticket_id=ticket_id)


_FILE_KEYS = {
    ('database', 'url'): 'database_url',
    ('database', 'embedded_data'): 'embedded_data',
    ('intake', 'max_message_bytes'): 'max_message_bytes',
    ('intake', 'batch_size'): 'batch_size',
    ('intake', 'max_crashes'): 'max_crashes',
    ('tickets', 'url_template'): 'ticket_url_template',
    ('server', 'smtp'): 'smtp_listen',
    ('server', 'lmtp'): 'lmtp_listen',
    ('server', 'http'): 'http_listen',
    ('server', 'http_max_body_bytes'): 'http_max_body_bytes',
    ('server', 'http_pool_size'): 'http_pool_size',
    ('server', 'api_token_key'): 'api_token_key',
    ('server', 'metrics_token'): 'metrics_token',
    ('server', 'hostname'): 'hostname',
    ('server', 'max_sessions'): 'max_sessions',
    ('server', 'idle_timeout'): 'idle_timeout',
    ('server', 'min_data_rate'): 'min_data_rate',
    ('server', 'data_rate_window'): 'data_rate_window',
    ('server', 'max_transaction_time'): 'max_transaction_time',
    ('server', 'tls_cert'): 'tls_cert',
    ('server', 'tls_key'): 'tls_key',
    ('server', 'intake_workers'): 'intake_workers',
    ('server', 'shutdown_grace'): 'shutdown_grace',
    ('database', 'timeout'): 'database_timeout',
    ('relay', 'host'): 'relay_host',
    ('relay', 'port'): 'relay_port',
    ('relay', 'starttls'): 'relay_starttls',
    ('relay', 'username'): 'relay_username',
    ('relay', 'password'): 'relay_password',
    ('relay', 'timeout'): 'relay_timeout',
    ('outbound', 'retry_base'): 'retry_base',
    ('outbound', 'retry_max'): 'retry_max',
    ('outbound', 'max_age'): 'max_delivery_age',
    ('outbound', 'delivery_workers'): 'delivery_workers',
    ('outbound', 'ack_per_hour'): 'ack_per_hour',
    ('outbound', 'timezone'): 'timezone',
    ('logging', 'format'): 'log_format',
    ('agents', 'invitation_timeout'): 'invitation_timeout',
    ('agents', 'presence'): 'agent_presence',
    ('notifications', 'session_ttl'): 'notification_session_ttl',
    ('notifications', 'long_poll'): 'long_poll_seconds',
}
_ENV_KEYS = {
    'DATABASE_URL': 'database_url',
    'POSTDESK_PGDATA': 'embedded_data',
    'POSTDESK_MAX_MESSAGE_BYTES': 'max_message_bytes',
    'POSTDESK_MAX_CRASHES': 'max_crashes',
    'POSTDESK_TICKET_URL': 'ticket_url_template',
    'POSTDESK_SMTP_LISTEN': 'smtp_listen',
    'POSTDESK_LMTP_LISTEN': 'lmtp_listen',
    'POSTDESK_HTTP_LISTEN': 'http_listen',
    'POSTDESK_HTTP_MAX_BODY': 'http_max_body_bytes',
    'POSTDESK_API_TOKEN_KEY': 'api_token_key',
    'POSTDESK_METRICS_TOKEN': 'metrics_token',
    'POSTDESK_HOSTNAME': 'hostname',
    'POSTDESK_DATABASE_TIMEOUT': 'database_timeout',
    'POSTDESK_MAX_SESSIONS': 'max_sessions',
    'POSTDESK_SHUTDOWN_GRACE': 'shutdown_grace',
    'POSTDESK_IDLE_TIMEOUT': 'idle_timeout',
    'POSTDESK_MIN_DATA_RATE': 'min_data_rate',
    'POSTDESK_DATA_RATE_WINDOW': 'data_rate_window',
    'POSTDESK_MAX_TRANSACTION_TIME': 'max_transaction_time',
    'POSTDESK_TLS_CERT': 'tls_cert',
    'POSTDESK_TLS_KEY': 'tls_key',
    'POSTDESK_SMTP_STARTTLS': 'relay_starttls',
    'POSTDESK_SMTP_USERNAME': 'relay_username',
    'POSTDESK_SMTP_PASSWORD': 'relay_password',
    'POSTDESK_RETRY_BASE': 'retry_base',
    'POSTDESK_RETRY_MAX': 'retry_max',
    'POSTDESK_MAX_DELIVERY_AGE': 'max_delivery_age',
    'POSTDESK_TIMEZONE': 'timezone',
    'POSTDESK_LOG_FORMAT': 'log_format',
    'POSTDESK_INVITATION_TIMEOUT': 'invitation_timeout',
    'POSTDESK_AGENT_PRESENCE': 'agent_presence',
    'POSTDESK_NOTIFICATION_TTL': 'notification_session_ttl',
    'POSTDESK_LONG_POLL': 'long_poll_seconds',
}


def load_config(path: str | None = None, env: dict | None = None) -> Config:
    """The configuration from the TOML file (if any) with the environment on top."""
    env = os.environ if env is None else env
    path = path or env.get('POSTDESK_CONFIG')
    values: dict = {}
    if path:
        document = _read_toml(path)
        for (section, key), name in _FILE_KEYS.items():
            if key in document.get(section, {}):
                values[name] = document[section][key]
    for variable, name in _ENV_KEYS.items():
        if variable in env and (env[variable] or name.endswith('_listen')):
            values[name] = env[variable]
    relay = env.get('POSTDESK_SMTP_RELAY')
    if relay:
        values['relay_host'], values['relay_port'] = _host_port(relay)
    return Config(**_typed(values))


def _host_port(value: str) -> tuple[str, str]:
    """POSTDESK_SMTP_RELAY=HOST:PORT (or HOST, port 25; [v6]:PORT)."""
    value = value.strip()
    host, sep, port = value.rpartition(':')
    if not sep or ']' in port or (value.count(':') > 1 and not value.startswith('[')):   # HOST, [v6], bare v6
        return value.strip('[]'), '25'
    return host.strip('[]'), port


def _read_toml(path: str) -> dict:
    try:
        with open(path, 'rb') as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigError('cannot read configuration file %s: %s' % (path, exc.strerror)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError('configuration file %s is not valid TOML: %s' % (path, exc)) from exc


def _typed(values: dict) -> dict:
    types = {f.name: f.type for f in fields(Config)}
    typed = {}
    for name, value in values.items():
        if types[name] == 'bool':
            value = _boolean(name, value)
        elif types[name] in ('int', 'float'):
            value = _positive_number(name, value, int if types[name] == 'int' else float)
        typed[name] = value
    return typed


def _positive_number(name: str, value, kind: type):
    try:
        value = kind(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError('%s must be a %s, not %r' % (name, 'whole number' if kind is int else 'number',
                                                       value)) from exc
    if value <= 0:
        raise ConfigError('%s must be positive, not %r' % (name, value))
    return value


def _boolean(name: str, value) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ('1', 'true', 'yes', 'on'):
        return True
    if text in ('0', 'false', 'no', 'off', ''):
        return False
    raise ConfigError('%s must be true or false, not %r' % (name, value))
