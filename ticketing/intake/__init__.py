"""A message in, ticket rows out: the named steps of intake (see runner.py), its sources (.eml files, folders,
mbox, Maildir), parsing ahead of storing, and retrying the quarantine."""
from .runner import Intake, batches_of, parse_limits

__all__ = ['Intake', 'batches_of', 'parse_limits']
