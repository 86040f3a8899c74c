"""The offering worker: queued work to ready agents, unanswered invitations back to their queues."""
