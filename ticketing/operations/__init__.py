"""The agents' and operators' verbs, one call one transaction: reply, mailbox changes, queueing an outgoing
message again. The command line calls only these (and the HTTP API will)."""
