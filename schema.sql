-- postdesk: the whole PostgreSQL schema. Applying it twice changes nothing (every statement is IF NOT EXISTS or
-- otherwise idempotent). Applied by `postdesk initdb` and on first use, under an advisory lock.
--
-- Names follow the seeds: SuperOffice's TicketEntity and CreateTicketFromMailData (mailbox, ticket, person),
-- iService's interactions with their status audit and [ref#: T-I] subject references, Genesys' queues,
-- workbins and user data.

CREATE TABLE IF NOT EXISTS postdesk_meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);

-- A mailbox mail is delivered to (SuperOffice MailboxId). follow_up decides what a reply to a closed ticket does.
CREATE TABLE IF NOT EXISTS mailbox (
    mailbox_id   serial PRIMARY KEY,
    address      text NOT NULL,
    name         text NOT NULL DEFAULT '',
    category     text NOT NULL DEFAULT '',
    priority     text NOT NULL DEFAULT 'Medium',
    follow_up    text NOT NULL DEFAULT 'reopen' CHECK (follow_up IN ('reopen', 'new-ticket')),
    is_default   boolean NOT NULL DEFAULT false,
    catch_all    boolean NOT NULL DEFAULT false,
    ack_template text,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS mailbox_address_key ON mailbox (lower(address));
CREATE UNIQUE INDEX IF NOT EXISTS mailbox_single_default ON mailbox (is_default) WHERE is_default;

-- Every change of the mailboxes bumps their version, so long-running workers know when to read them again.
CREATE OR REPLACE FUNCTION postdesk_mailboxes_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO postdesk_meta (key, value) VALUES ('mailboxes_changed', clock_timestamp()::text)
    ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS mailbox_changed ON mailbox;
CREATE TRIGGER mailbox_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON mailbox
    FOR EACH STATEMENT EXECUTE FUNCTION postdesk_mailboxes_changed();

-- Customers, one per e-mail address compared case-insensitively.
CREATE TABLE IF NOT EXISTS person (
    person_id    bigserial PRIMARY KEY,
    email        text NOT NULL,
    full_name    text NOT NULL DEFAULT '',
    contact_name text,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS person_email_key ON person (lower(email));

CREATE TABLE IF NOT EXISTS agent (
    agent_id   serial PRIMARY KEY,
    login      text NOT NULL UNIQUE,
    full_name  text NOT NULL DEFAULT '',
    email      text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS agent_email_idx ON agent (lower(email));
-- Agents of the HTTP API: a role (an agent works on its mailboxes' tickets, an admin on all), whether it may sign
-- in, and its secrets as hashes only: the password as argon2id, the API token as HMAC-SHA256 under the server's
-- key (postdesk_meta 'api_token_key' unless configured), so that checking a token costs one index probe.
ALTER TABLE agent ADD COLUMN IF NOT EXISTS role text NOT NULL DEFAULT 'agent';
ALTER TABLE agent ADD COLUMN IF NOT EXISTS active boolean NOT NULL DEFAULT true;
ALTER TABLE agent ADD COLUMN IF NOT EXISTS password_hash text;
ALTER TABLE agent ADD COLUMN IF NOT EXISTS token_hash bytea;
ALTER TABLE agent ADD COLUMN IF NOT EXISTS token_created_at timestamptz;
CREATE UNIQUE INDEX IF NOT EXISTS agent_token_key ON agent (token_hash) WHERE token_hash IS NOT NULL;
ALTER TABLE agent DROP CONSTRAINT IF EXISTS agent_role_known,
    ADD CONSTRAINT agent_role_known CHECK (role IN ('agent', 'admin'));

-- The mailboxes an agent works for (it sees and operates on their tickets).
CREATE TABLE IF NOT EXISTS agent_mailbox (
    agent_id   integer NOT NULL REFERENCES agent ON DELETE CASCADE,
    mailbox_id integer NOT NULL REFERENCES mailbox ON DELETE CASCADE,
    PRIMARY KEY (agent_id, mailbox_id)
);
CREATE INDEX IF NOT EXISTS agent_mailbox_mailbox_idx ON agent_mailbox (mailbox_id);

-- A change of who an agent is (login, role, secrets, active, mailboxes) is announced, so that the HTTP API's
-- processes drop the credentials they keep in memory at once.
CREATE OR REPLACE FUNCTION postdesk_agents_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('postdesk_agents', '');
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS agent_changed ON agent;
CREATE TRIGGER agent_changed AFTER INSERT OR DELETE OR TRUNCATE
    OR UPDATE OF login, full_name, email, role, active, password_hash, token_hash ON agent
    FOR EACH STATEMENT EXECUTE FUNCTION postdesk_agents_changed();
DROP TRIGGER IF EXISTS agent_mailbox_changed ON agent_mailbox;
CREATE TRIGGER agent_mailbox_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON agent_mailbox
    FOR EACH STATEMENT EXECUTE FUNCTION postdesk_agents_changed();

-- Genesys: interactions are placed in queues (shared) and workbins (an agent's or a group's holding area).
CREATE TABLE IF NOT EXISTS queue (
    queue_id   serial PRIMARY KEY,
    name       text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS workbin (
    workbin_id  serial PRIMARY KEY,
    name        text NOT NULL,
    agent_id    integer REFERENCES agent,
    agent_group text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (name, agent_id)
);

-- The SuperOffice TicketEntity fields that mean something for mail. thread_token makes the fixed per-ticket
-- Message-ID reference of outgoing replies unguessable, so a header naming it is proof of a real reply.
CREATE TABLE IF NOT EXISTS ticket (
    ticket_id      bigserial PRIMARY KEY,
    mailbox_id     integer NOT NULL REFERENCES mailbox,
    title          text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_changed   timestamptz NOT NULL DEFAULT now(),
    base_status    text NOT NULL DEFAULT 'active'
                   CHECK (base_status IN ('active', 'closed', 'postponed', 'deleted')),
    status         text NOT NULL DEFAULT 'Open',
    category       text NOT NULL DEFAULT '',
    priority       text NOT NULL DEFAULT '',
    owned_by       integer REFERENCES agent,
    person_id      bigint REFERENCES person,
    from_address   text,
    connect_id     bigint REFERENCES ticket,
    num_messages   integer NOT NULL DEFAULT 0,
    num_replies    integer NOT NULL DEFAULT 0,
    has_attachment boolean NOT NULL DEFAULT false,
    tags           text[] NOT NULL DEFAULT '{}',
    replied_at     timestamptz,
    closed_at      timestamptz,
    queue_id       integer REFERENCES queue,
    workbin_id     integer REFERENCES workbin,
    flagged        text,
    custom_fields  jsonb NOT NULL DEFAULT '{}',
    thread_token   text NOT NULL DEFAULT md5(random()::text || clock_timestamp()::text)
);
CREATE INDEX IF NOT EXISTS ticket_mailbox_status_idx ON ticket (mailbox_id, base_status, last_changed DESC);
CREATE INDEX IF NOT EXISTS ticket_person_idx ON ticket (person_id);
CREATE INDEX IF NOT EXISTS ticket_connect_idx ON ticket (connect_id) WHERE connect_id IS NOT NULL;
-- SuperOffice's Deadline; the API lists tickets newest change first, and the round robin counts an agent's open ones.
ALTER TABLE ticket ADD COLUMN IF NOT EXISTS deadline timestamptz;
CREATE INDEX IF NOT EXISTS ticket_last_changed_idx ON ticket (last_changed DESC, ticket_id DESC);
CREATE INDEX IF NOT EXISTS ticket_owner_idx ON ticket (owned_by, base_status) WHERE owned_by IS NOT NULL;
-- The id of each tag name (SuperOffice's TicketEntity lists its Tags as {Id, Name, ToolTip}); a ticket keeps the
-- names (ticket.tags), and a name has its row from the moment a ticket is first saved with it.
CREATE TABLE IF NOT EXISTS tag (
    tag_id  serial PRIMARY KEY,
    name    text NOT NULL UNIQUE,
    tooltip text NOT NULL DEFAULT ''
);
INSERT INTO tag (name) SELECT DISTINCT unnest(tags) FROM ticket WHERE tags <> '{}' ON CONFLICT (name) DO NOTHING;

-- Every inbound message's bytes, stored before anything else can fail, with its envelope when it came by SMTP.
CREATE TABLE IF NOT EXISTS raw_message (
    raw_id        bigserial PRIMARY KEY,
    sha256        bytea NOT NULL,
    data          bytea NOT NULL,
    size          integer NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now(),
    source        text NOT NULL DEFAULT '',
    envelope_from text,
    envelope_to   text[],
    peer          text,
    helo          text,
    state         text NOT NULL DEFAULT 'done' CHECK (state IN ('pending', 'done', 'quarantined'))
);
CREATE INDEX IF NOT EXISTS raw_message_pending_idx ON raw_message (raw_id) WHERE state = 'pending';
-- trace_len: bytes of the Received: header postdesk added in front; a message's identity (the sha256 above, and
-- the Message-ID derived from it when there is none) is taken from the bytes as the sender sent them.
ALTER TABLE raw_message ADD COLUMN IF NOT EXISTS trace_len integer NOT NULL DEFAULT 0;
-- A pending row being worked on carries the backend pid of the intake worker's connection (a claim lasts as long
-- as that connection); attempts counts the claims.
ALTER TABLE raw_message ADD COLUMN IF NOT EXISTS claimed_by integer;
ALTER TABLE raw_message ADD COLUMN IF NOT EXISTS attempts integer NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS raw_message_claimed_idx ON raw_message (claimed_by) WHERE state = 'pending';
-- claimed_at: when the claim was taken; crashes: how many claims ended with their backend gone while the server kept
-- running and without the worker releasing them after losing its connection, that is with the worker process
-- dead. A row that has crashed workers is worked on alone, and quarantined after `max_crashes`.
ALTER TABLE raw_message ADD COLUMN IF NOT EXISTS claimed_at timestamptz;
ALTER TABLE raw_message ADD COLUMN IF NOT EXISTS crashes integer NOT NULL DEFAULT 0;

-- Every inbound and outbound message (iService interaction), in exactly one ticket.
CREATE TABLE IF NOT EXISTS interaction (
    interaction_id bigserial PRIMARY KEY,
    ticket_id      bigint NOT NULL REFERENCES ticket,
    mailbox_id     integer NOT NULL REFERENCES mailbox,
    direction      text NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    type           text NOT NULL,
    status         text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    sent_date      timestamptz,
    subject        text NOT NULL DEFAULT '',
    subject_bare   text NOT NULL DEFAULT '',
    from_name      text NOT NULL DEFAULT '',
    from_email     text NOT NULL DEFAULT '',
    to_addresses   jsonb NOT NULL DEFAULT '[]',
    cc_addresses   jsonb NOT NULL DEFAULT '[]',
    body_plain     text NOT NULL DEFAULT '',
    body_html      text,
    message_id     text NOT NULL,
    in_reply_to    text[] NOT NULL DEFAULT '{}',
    refs           text[] NOT NULL DEFAULT '{}',
    thread_rule    text NOT NULL,
    auto_submitted text,
    bounce         jsonb,
    person_id      bigint REFERENCES person,
    agent_id       integer REFERENCES agent,
    raw_id         bigint REFERENCES raw_message,
    num_attachments integer NOT NULL DEFAULT 0,
    defects        text[] NOT NULL DEFAULT '{}',
    note           text,
    user_data      jsonb NOT NULL DEFAULT '{}'
);
-- The lookup every message makes (dedupe, In-Reply-To, References) and the guarantee "stored once".
CREATE UNIQUE INDEX IF NOT EXISTS interaction_mailbox_message_id_key ON interaction (mailbox_id, message_id);
CREATE INDEX IF NOT EXISTS interaction_ticket_idx ON interaction (ticket_id, interaction_id);
CREATE INDEX IF NOT EXISTS interaction_from_idx ON interaction (ticket_id, lower(from_email));

-- Message-IDs named (In-Reply-To, References) by a message that opened a ticket of its own because they were not
-- stored yet. When one of them arrives it joins that ticket (the one of its earliest reply, by sent_date), and
-- the other tickets waiting for it are merged there: the same messages give the same tickets in any order.
CREATE TABLE IF NOT EXISTS thread_wait (
    mailbox_id     integer NOT NULL REFERENCES mailbox,
    message_id     text NOT NULL,
    ticket_id      bigint NOT NULL REFERENCES ticket,
    interaction_id bigint NOT NULL REFERENCES interaction,
    sent_date      timestamptz,
    PRIMARY KEY (mailbox_id, message_id, interaction_id)
);
CREATE INDEX IF NOT EXISTS thread_wait_ticket_idx ON thread_wait (ticket_id);

-- Attachment bytes, stored once however many messages carry them.
CREATE TABLE IF NOT EXISTS blob (
    sha256 bytea PRIMARY KEY,
    size   integer NOT NULL,
    data   bytea NOT NULL
);

CREATE TABLE IF NOT EXISTS attachment (
    attachment_id  bigserial PRIMARY KEY,
    interaction_id bigint NOT NULL REFERENCES interaction ON DELETE CASCADE,
    position       integer NOT NULL,
    filename       text NOT NULL,
    content_type   text NOT NULL,
    content_id     text,
    inline         boolean NOT NULL DEFAULT false,
    size           integer NOT NULL,
    sha256         bytea NOT NULL REFERENCES blob
);
CREATE INDEX IF NOT EXISTS attachment_interaction_idx ON attachment (interaction_id);

-- Each change of a ticket's or an interaction's status: when, what, who, from what to what (iService statusAudit).
CREATE TABLE IF NOT EXISTS status_audit (
    audit_id       bigserial PRIMARY KEY,
    ticket_id      bigint NOT NULL REFERENCES ticket,
    interaction_id bigint REFERENCES interaction,
    at             timestamptz NOT NULL DEFAULT now(),
    action         text NOT NULL,
    modifier       text NOT NULL,
    status_before  text,
    status_after   text
);
CREATE INDEX IF NOT EXISTS status_audit_ticket_idx ON status_audit (ticket_id, audit_id);
-- target: whether the ticket's status changed ('ticket') or the interaction's own (an outbound reply's Unsent,
-- Sent, Failed: 'interaction').
ALTER TABLE status_audit ADD COLUMN IF NOT EXISTS target text NOT NULL DEFAULT 'ticket';
-- modifier_id: the agent's id when an agent of the API made the change (iService's modifierID); the modifier
-- text alone cannot say it (a customer's address or a CLI user's name may equal some agent's login).
ALTER TABLE status_audit ADD COLUMN IF NOT EXISTS modifier_id integer;

-- Messages that could not be parsed, routed or stored: kept whole, with the reason, until retried.
CREATE TABLE IF NOT EXISTS quarantine (
    quarantine_id  bigserial PRIMARY KEY,
    created_at     timestamptz NOT NULL DEFAULT now(),
    reason         text NOT NULL,
    source         text NOT NULL DEFAULT '',
    mailbox_hint   text,
    sha256         bytea NOT NULL,
    data           bytea NOT NULL,
    raw_id         bigint REFERENCES raw_message,
    state          text NOT NULL DEFAULT 'held' CHECK (state IN ('held', 'released')),
    released_at    timestamptz,
    interaction_id bigint REFERENCES interaction
);
CREATE INDEX IF NOT EXISTS quarantine_held_idx ON quarantine (quarantine_id) WHERE state = 'held';
CREATE UNIQUE INDEX IF NOT EXISTS quarantine_held_once_key ON quarantine (sha256) WHERE state = 'held';

-- Outgoing messages, with their exact MIME bytes, claimed by delivery workers row by row (FOR UPDATE SKIP LOCKED).
CREATE TABLE IF NOT EXISTS outbox (
    outbox_id       bigserial PRIMARY KEY,
    interaction_id  bigint REFERENCES interaction,
    ticket_id       bigint REFERENCES ticket,
    mailbox_id      integer NOT NULL REFERENCES mailbox,
    mail_from       text NOT NULL,
    rcpt_to         text[] NOT NULL,
    data            bytea NOT NULL,
    state           text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'sent', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    relay_reply     text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz
);
CREATE INDEX IF NOT EXISTS outbox_due_idx ON outbox (next_attempt_at) WHERE state = 'queued';
-- kind: a reply written by an agent, or an automatic acknowledgement of a new ticket (rate-limited per recipient).
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS kind text NOT NULL DEFAULT 'reply';
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS message_id text;
-- When the row was (last) queued: max_age counts from here, so `postdesk outbox retry` gives a row a fresh start.
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS queued_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX IF NOT EXISTS outbox_interaction_idx ON outbox (interaction_id);
CREATE INDEX IF NOT EXISTS outbox_ack_recent_idx ON outbox (created_at) WHERE kind = 'ack';
-- postdesk status: failed replies, and deliveries of the last hour, counted without reading the whole outbox.
CREATE INDEX IF NOT EXISTS outbox_failed_idx ON outbox (outbox_id) WHERE state = 'failed';
CREATE INDEX IF NOT EXISTS outbox_sent_at_idx ON outbox (sent_at) WHERE state = 'sent';

-- Agents' work (Genesys, seeds 001 and 004). A mailbox has a default queue; agents belong to queues and to agent
-- and place groups, say when they are ready and how many interactions they take at once. An inbound customer
-- message that needs an answer is a work item: its state, its queue or workbin, the agent it is offered to or
-- owned by, and the agents who rejected it.
ALTER TABLE mailbox ADD COLUMN IF NOT EXISTS queue_id integer REFERENCES queue;
ALTER TABLE agent ADD COLUMN IF NOT EXISTS ready boolean NOT NULL DEFAULT false;
ALTER TABLE agent ADD COLUMN IF NOT EXISTS capacity integer NOT NULL DEFAULT 1;
ALTER TABLE agent ADD COLUMN IF NOT EXISTS last_seen timestamptz;
ALTER TABLE agent ADD COLUMN IF NOT EXISTS last_offered_at timestamptz;
CREATE TABLE IF NOT EXISTS agent_queue (
    agent_id integer NOT NULL REFERENCES agent ON DELETE CASCADE,
    queue_id integer NOT NULL REFERENCES queue ON DELETE CASCADE,
    PRIMARY KEY (agent_id, queue_id)
);
CREATE INDEX IF NOT EXISTS agent_queue_queue_idx ON agent_queue (queue_id);
CREATE TABLE IF NOT EXISTS agent_group_member (
    agent_id   integer NOT NULL REFERENCES agent ON DELETE CASCADE,
    kind       text NOT NULL CHECK (kind IN ('agent', 'place')),
    group_name text NOT NULL,
    PRIMARY KEY (agent_id, kind, group_name)
);
ALTER TABLE workbin ADD COLUMN IF NOT EXISTS place_group text;
CREATE UNIQUE INDEX IF NOT EXISTS workbin_agent_group_key ON workbin (name, agent_group) WHERE agent_group IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS workbin_place_group_key ON workbin (name, place_group) WHERE place_group IS NOT NULL;
ALTER TABLE interaction ADD COLUMN IF NOT EXISTS state text;
ALTER TABLE interaction ADD COLUMN IF NOT EXISTS queue_id integer REFERENCES queue;
ALTER TABLE interaction ADD COLUMN IF NOT EXISTS workbin_id integer REFERENCES workbin;
ALTER TABLE interaction ADD COLUMN IF NOT EXISTS owner_id integer REFERENCES agent;
ALTER TABLE interaction ADD COLUMN IF NOT EXISTS invited_id integer REFERENCES agent;
ALTER TABLE interaction ADD COLUMN IF NOT EXISTS invited_at timestamptz;
ALTER TABLE interaction ADD COLUMN IF NOT EXISTS rejected_by integer[] NOT NULL DEFAULT '{}';
ALTER TABLE interaction ADD COLUMN IF NOT EXISTS parent_id bigint REFERENCES interaction;
ALTER TABLE interaction ADD COLUMN IF NOT EXISTS state_changed_at timestamptz;
CREATE INDEX IF NOT EXISTS interaction_queued_idx ON interaction (queue_id, interaction_id) WHERE state = 'Queued';
CREATE INDEX IF NOT EXISTS interaction_invited_idx ON interaction (invited_at) WHERE state = 'Invited';
CREATE INDEX IF NOT EXISTS interaction_owned_idx ON interaction (owner_id) WHERE owner_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS interaction_workbin_idx ON interaction (workbin_id) WHERE workbin_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS interaction_active_work_idx ON interaction (ticket_id)
    WHERE state IN ('Queued', 'Invited', 'Accepted', 'InWorkbin');
-- Who owns a work item after the change (the audit shows every hand-over).
ALTER TABLE status_audit ADD COLUMN IF NOT EXISTS assigned_to text;

-- Events for the agents' clients (CometD, seed 001): written in the same transaction as the change they report;
-- a NOTIFY only rings the bell. Sessions of CometD clients live here too, so that any serve process can answer
-- any client, and a client that reconnects gets what it missed, in order.
CREATE TABLE IF NOT EXISTS event (
    event_id   bigserial PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    agent_id   integer NOT NULL REFERENCES agent ON DELETE CASCADE,
    channel    text NOT NULL,
    data       jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS event_agent_idx ON event (agent_id, event_id);
CREATE INDEX IF NOT EXISTS event_created_idx ON event (created_at);
CREATE TABLE IF NOT EXISTS notification_session (
    client_id     text PRIMARY KEY,
    agent_id      integer NOT NULL REFERENCES agent ON DELETE CASCADE,
    subscriptions text[] NOT NULL DEFAULT '{}',
    last_event    bigint NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen     timestamptz NOT NULL DEFAULT now()
);

-- The referenceId of workbin requests (seed 004): increasing across every process.
CREATE SEQUENCE IF NOT EXISTS workbin_request_seq;

-- Every mailbox has a default queue (named after it unless one is set).
INSERT INTO queue (name) SELECT lower(address) FROM mailbox WHERE queue_id IS NULL ON CONFLICT (name) DO NOTHING;
UPDATE mailbox m SET queue_id = q.queue_id FROM queue q WHERE m.queue_id IS NULL AND q.name = lower(m.address);

-- The status vocabulary of ticketing/statuses.py (a test keeps the two equal). Dropped and added again, so that an
-- upgrade applies a changed list to an existing database.
ALTER TABLE ticket DROP CONSTRAINT IF EXISTS ticket_status_known,
    ADD CONSTRAINT ticket_status_known CHECK (status IN ('Open', 'Closed', 'Waiting for customer', 'Postponed',
                                                      'Deleted'));
ALTER TABLE interaction DROP CONSTRAINT IF EXISTS interaction_status_known,
    ADD CONSTRAINT interaction_status_known CHECK (status IN ('Received', 'Draft', 'Unsent', 'Sent', 'Failed',
                                                             'Cancelled'));
ALTER TABLE status_audit DROP CONSTRAINT IF EXISTS status_audit_target_known,
    ADD CONSTRAINT status_audit_target_known CHECK (target IN ('ticket', 'interaction', 'work'));
ALTER TABLE interaction DROP CONSTRAINT IF EXISTS interaction_state_known,
    ADD CONSTRAINT interaction_state_known CHECK (state IN ('Queued', 'Invited', 'Accepted', 'Completed', 'InWorkbin',
                                                           'Draft', 'Cancelled'));

-- lz4 for the large byte and text columns, where the server was built with it (measured: 2 to 4 times less CPU
-- than the default pglz). A server without lz4 keeps pglz; nothing else depends on it.
DO $$
DECLARE
    col record;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_settings
               WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
        FOR col IN
            SELECT c.table_name, c.column_name
            FROM (VALUES ('raw_message', 'data'), ('blob', 'data'), ('quarantine', 'data'), ('outbox', 'data'),
                         ('interaction', 'body_plain'), ('interaction', 'body_html')) AS c (table_name, column_name)
            JOIN pg_attribute a ON a.attrelid = c.table_name::regclass AND a.attname = c.column_name
            WHERE a.attcompression IS DISTINCT FROM 'l'
        LOOP
            EXECUTE format('ALTER TABLE %I ALTER COLUMN %I SET COMPRESSION lz4', col.table_name, col.column_name);
        END LOOP;
    END IF;
END
$$;
