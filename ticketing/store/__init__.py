"""The store: the only SQL and the only psycopg in postdesk, cut by table family.

`db` (connections and the schema), `rows` (typed rows whose fields are the COPY columns), `batches` (what a batch
of inbound messages needs to know, and writing it), `mailboxes`, `tickets`, `interactions` (and their status
audit), `spool`, `outbox`, `quarantine`, `events` (NOTIFY channels) and `agents`.
"""
