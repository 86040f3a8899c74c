"""The shapes the HTTP API publishes in its OpenAPI document (`/openapi.json`): request bodies as the seeds name
their fields (SuperOffice 002, 003; iService 000) and the responses each route may give, errors included.
Responses are built by `ticketing.formats`; these models only describe them (and validate requests), so every
field is typed as loosely as the vendors' own documents allow and unknown fields are let through.
"""
from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Path
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StrictStr, model_validator

MAX_ID = 2 ** 63 - 1
MAX_DEPTH = 32          # lists and objects in a request nest at most this deep (deeper cannot be stored and read)


def ascii_digits(value):
    """An id in a path is written in ASCII digits and nothing else: pydantic's integers would take '+1', ' 1',
    '1_0' (as 10), '1.0' and other scripts' digits, naming one resource by many paths."""
    if isinstance(value, str) and not re.fullmatch(r'[0-9]{1,20}', value):
        raise ValueError('an id is written in the digits 0 to 9 only')
    return value


PathId = Annotated[int, BeforeValidator(ascii_digits)]
ResourceId = Annotated[PathId, Path(ge=1, le=MAX_ID)]          # path parameters of that type, as FastAPI declares them
AttachmentNumber = Annotated[PathId, Path(ge=1, le=2 ** 31 - 1)]


def nesting_depth(value, limit: int = MAX_DEPTH) -> int:
    """How deeply lists and objects nest in a JSON value (counted level by level, no further than limit + 1)."""
    depth, containers = 0, [value] if isinstance(value, (dict, list)) else []
    while containers and depth <= limit:
        depth += 1
        children = []
        for container in containers:
            items = container.values() if isinstance(container, dict) else container
            children.extend(item for item in items if isinstance(item, (dict, list)))
        containers = children
    return depth


class Open(BaseModel):
    """A request or response object that lets unknown fields through, nested no deeper than MAX_DEPTH."""
    model_config = ConfigDict(extra='allow')

    @model_validator(mode='before')
    @classmethod
    def not_too_deep(cls, data):
        if nesting_depth(data) > MAX_DEPTH:
            raise ValueError('lists and objects nest deeper than %d levels' % MAX_DEPTH)
        return data


class ErrorBody(Open):
    Error: str
    ErrorType: str
    Status: int


class Health(BaseModel):
    status: str


class MailData(Open):
    """CreateTicketFromMailData's request (seed 003): the mailbox and an RFC 822 message."""
    MailboxId: int = Field(ge=-MAX_ID, le=MAX_ID, strict=True)
    Data: str


class TicketInfo(Open):
    TicketId: int | None = None
    Title: str | None = None
    OwnerName: str | None = None
    CategoryName: str | None = None
    PriorityName: str | None = None
    TicketUrl: str | None = None
    PersonName: str | None = None
    ContactName: str | None = None
    TableRight: Any = None
    FieldProperties: dict | None = None
    InteractionId: int | None = None
    Outcome: str | None = None
    ThreadRule: str | None = None


class Quarantined(ErrorBody):
    QuarantineId: int | None = None
    Outcome: str
    Reason: str | None = None


class TicketEntityIn(Open):
    """SaveTicketEntity's request (seed 002); fields that are read-only or computed are accepted and ignored."""
    TicketId: int | None = Field(default=None, ge=0, le=MAX_ID, strict=True)
    Title: str | None = None
    BaseStatus: str | None = None
    Status: str | dict | None = None
    Category: str | dict | None = None
    Priority: str | dict | None = None
    OwnedBy: dict | None = None
    Person: dict | None = None
    FromAddress: str | None = None
    Tags: list[str | dict] | None = None
    Deadline: str | None = None
    ConnectId: int | None = Field(default=None, ge=0, le=MAX_ID, strict=True)
    CustomFields: dict | None = None
    MailboxId: int | None = Field(default=None, ge=0, le=2 ** 31 - 1, strict=True)


class TagItem(BaseModel):
    """One of a ticket's Tags, as the seed's TicketEntity lists them."""
    Id: int | None = None
    Name: str
    ToolTip: str = ''


class TicketEntity(Open):
    """SaveTicketEntity's and GET Ticket's answer; with $select, the fields not named are null."""
    TicketId: int | None = None
    Title: str | None = None
    CreatedAt: str | None = None
    LastChanged: str | None = None
    BaseStatus: str | None = None
    Status: Any = None
    Category: Any = None
    Priority: Any = None
    OwnedBy: dict | None = None
    Person: dict | None = None
    FromAddress: str | None = None
    ConnectId: int | None = None
    NumMessages: int | None = None
    NumReplies: int | None = None
    HasAttachment: bool | None = None
    Tags: list[TagItem] | None = None
    Deadline: str | None = None
    CustomFields: dict | None = None
    Messages: list[dict] | None = None


class TicketPage(BaseModel):
    total: int
    top: int
    skip: int
    items: list[TicketEntity]


class MessageEntity(Open):
    TicketMessageId: int
    TicketId: int
    CreatedAt: str | None = None
    Subject: str | None = None
    MessageHeaders: list[dict]
    Body: str
    PlainBody: str
    Attachments: list[dict]


class IServiceAttachment(Open):
    fileName: str
    contentType: str | None = None
    data: str


class ThreadProperty(Open):
    """One of iService's threadProperties: its id and name, and its values (objects with a `value`)."""
    propertyID: StrictStr | StrictInt | None = None
    propertyName: str | None = None
    values: list[dict] | None = None


class IServiceAnswer(Open):
    """The `answer` of sendleaveopen (seed 000), as much of it as a mail pipeline uses."""
    inResponseToID: StrictStr | StrictInt | None = None
    subject: str | None = None
    bodyHtml: str | None = None
    destEmail: str | None = None
    addSubjectRefNum: bool | None = None
    supressSubjectRef: bool | int | None = None
    leaveOpen: bool | None = None
    expectReply: bool | int | None = None
    note: str | None = None
    attachments: list[IServiceAttachment] | None = None
    threadProperties: list[ThreadProperty] | None = None


class IServiceRequest(Open):
    interactionIDs: list[StrictStr | StrictInt] | None = None
    answer: IServiceAnswer
    interactionID: StrictStr | StrictInt | None = None


class IServiceResponse(BaseModel):
    """sendleaveopen's response object; the same keys, with `errors`, for a request that failed."""
    errors: list
    errorDetails: list
    numCanGet: int
    numCanApprove: int
    row: dict | None
    details: dict | None
    response: dict | None


class GenesysOperation(Open):
    """An operation of seed 001 or 004: its name, and the fields it takes (queueName, userData, workbin, userId,
    id...)."""
    operationName: str = ''


class InteractionUpdate(Open):
    """PUT on an interaction: user data to merge, and the subject of a draft reply."""
    userData: dict | None = None
    subject: str | None = None


class GenesysBody(Open):
    """The seed's success and failure bodies (status / errorDescription, or statusCode / statusMessage)."""
