"""Intake, step 1: prepare. A message's bytes become a parsed message with the identity it is stored and
deduplicated under (its Message-ID, or one derived from the sha256 of its bytes), or the reason it is not a
message at all.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ingest import ParsedMail

from ..model import SourceMessage
from ..threads import storage_message_id
from .parse_ahead import ParseResult


@dataclass(frozen=True)
class Prepared:
    message: SourceMessage
    sha256: bytes
    parsed: ParsedMail | None = None
    message_id: str | None = None
    reason: str | None = None          # why it is not a message, when it is not


def identity_digest(message: SourceMessage) -> bytes:
    """The sha256 of the bytes as the sender sent them (postdesk's own trace header excluded): stored by the spool
    already, computed here otherwise."""
    if message.sha256 is not None:
        return message.sha256
    return hashlib.sha256(memoryview(message.raw)[message.trace_len:]).digest()


def prepare(message: SourceMessage, result: ParseResult) -> Prepared:
    digest = identity_digest(message)
    if result.parsed is None:
        return Prepared(message, digest, reason=result.reason)
    return Prepared(message, digest, result.parsed, storage_message_id(result.parsed, digest))
