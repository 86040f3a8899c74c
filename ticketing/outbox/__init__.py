"""The outbox's delivery workers (the SQL of the outbox is in `ticketing.store.outbox`)."""
