"""Wire models, named for their direction. Request models describe what the edge accepts
(and document it in ``/openapi.json``); unknown fields are kept, as IMKIT stores custom
fields verbatim. The rules themselves live in the services. Booleans are strict (JSON
true/false, as described): lax parsing would take "0", 1 or "yes" for them."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, WithJsonSchema

from parley.services.devices import DEVICE_TYPES
from parley.services.search import SEARCH_TYPES


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def fields(self) -> dict[str, Any]:
        """The body as sent: only the keys the caller set, with their wire names."""
        return self.model_dump(by_alias=True, exclude_unset=True)


class ClientUpsert(_Open):
    id: str = Field(alias="_id", min_length=1, max_length=255)
    nickname: str | None = Field(default=None, max_length=255)
    avatarUrl: str | None = Field(default=None, max_length=4096)
    description: str | None = Field(default=None, max_length=4096)
    issueAccessToken: StrictBool = False
    token: str | None = Field(default=None, min_length=1, max_length=4096)
    expirationDate: str | int | None = None


class ClientProfile(_Open):
    id: str = Field(alias="_id", min_length=1, max_length=255)
    nickname: str | None = Field(default=None, max_length=255)
    avatarUrl: str | None = Field(default=None, max_length=4096)


class ClientBatch(BaseModel):
    data: list[ClientProfile]  # the service answers 413 beyond its batch limit


class TokenBind(BaseModel):
    # Optional here so that a missing one is the service's MISSING_PARAMETER.
    token: str | None = Field(default=None, min_length=1, max_length=4096)
    expirationDate: str | int | None = None


class TokenRevoke(BaseModel):
    token: str | None = Field(default=None, min_length=1, max_length=4096)


class ProfileUpdate(_Open):
    nickname: str | None = Field(default=None, max_length=255)
    avatarUrl: str | None = Field(default=None, max_length=4096)
    description: str | None = Field(default=None, max_length=4096)
    # The user's own status line ("in a meeting"), shown to members of its rooms.
    status: str | None = Field(default=None, max_length=256)


class Envelope(BaseModel):
    """The success envelope of every IMKIT response."""

    RC: int = 0
    RM: str = "OK"
    result: Any = None


class ErrorBody(BaseModel):
    RC: int
    RM: str
    error: str
    message: str
    retryAfter: int | None = None


class RoomCreate(_Open):
    """Server-owned fields (appID, timestamps, memberProperties, lastMessage, …) are
    ignored: the service reads only the fields it knows."""

    id: str | None = Field(default=None, alias="_id", min_length=1, max_length=255)
    name: str | None = None
    cover: str | None = None
    roomType: str | None = None
    description: str | None = None
    roomTags: list[str] | None = None
    members: list[str] | None = None
    invitee: str | list[str] | None = None
    owner: str | None = None
    webhook: str | None = None
    botMode: StrictBool | None = None
    extParams: str | None = None
    systemMessage: StrictBool | None = None
    invitationRequired: StrictBool | None = None


class RoomUpdate(_Open):
    name: str | None = None
    cover: str | None = None
    description: str | None = None
    roomTags: list[str] | None = None
    webhook: str | None = None
    botMode: StrictBool | None = None
    extParams: str | None = None
    opening: int | None = None
    status: int | None = None
    owner: str | None = None
    managers: list[str] | None = None


class RoomJoin(BaseModel):
    systemMessage: StrictBool = True


class MembersAdd(BaseModel):
    invitees: list[str] = Field(min_length=1)
    systemMessage: StrictBool = False
    invitationRequired: StrictBool = False


class MembersRemove(BaseModel):
    members: list[str] = Field(min_length=1)
    systemMessage: StrictBool = False


class MemberPropertyUpdate(BaseModel):
    property: str = Field(min_length=1, max_length=64)
    value: Any


class LastReadUpdate(BaseModel):
    message: str = Field(min_length=1, max_length=64)


class InvitationsCancel(BaseModel):
    invitees: list[str] = Field(min_length=1)
    systemMessage: StrictBool = True


# A preference may be left out but not sent as null (the service refuses null).
_PrefFlag = Annotated[StrictBool | None, WithJsonSchema({"type": "boolean"})]


class RoomPrefUpdate(BaseModel):
    """Described as the service checks it (INVALID_TAGS and its other codes stay its)."""

    model_config = ConfigDict(extra="forbid")

    tags: Annotated[
        list[str] | None,
        WithJsonSchema(
            {
                "type": "array",
                "maxItems": 100,
                "items": {"type": "string", "minLength": 1, "maxLength": 100},
            }
        ),
    ] = None
    tagColors: Annotated[
        dict[str, str] | None,
        WithJsonSchema(
            {
                "type": "object",
                "maxProperties": 100,
                "additionalProperties": {"type": "string", "maxLength": 32},
            }
        ),
    ] = None
    folder: str | None = Field(default=None, max_length=255)
    muted: _PrefFlag = None
    sticky: _PrefFlag = None
    hidden: _PrefFlag = None
    translation: _PrefFlag = None

    def fields(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


class DeviceSubscription(BaseModel):
    type: str = Field(min_length=1, max_length=16, json_schema_extra={"enum": list(DEVICE_TYPES)})
    token: str | None = Field(default=None, max_length=4096)
    deviceId: str | None = Field(default=None, max_length=255)
    clientId: str | None = Field(default=None, max_length=255)


class GroupUpsert(_Open):
    """A nickname is required (the service says MISSING_PARAMETER without one)."""

    model_config = ConfigDict(json_schema_extra={"required": ["nickname"]})

    id: str | None = Field(default=None, alias="_id", min_length=1, max_length=255)
    nickname: Annotated[
        str | None, WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 255})
    ] = Field(default=None, max_length=255)
    avatarUrl: str | None = Field(default=None, max_length=4096)
    members: Annotated[
        list[str] | None, WithJsonSchema({"type": "array", "items": {"type": "string"}})
    ] = None


class Typing(BaseModel):
    message: str | None = Field(default=None, max_length=1000)


# -- bodies the services parse themselves ---------------------------------------------
# Routes that hand their JSON to a service unparsed (the service checks each field and
# answers with the contract's error codes) describe it with these; nothing validates
# against them at the edge.

_Tag = Annotated[str, Field(min_length=1, max_length=100)]
_Tags = list[_Tag] | _Tag | None


class SendAs(_Open):
    """``POST /messages``: a message (any message fields) posted as ``sender``."""

    room: str = Field(min_length=1, max_length=255)
    sender: str = Field(min_length=1, max_length=255)
    messageType: str | None = Field(default=None, min_length=1, max_length=64)
    push: StrictBool | None = None
    skipTotalBadge: StrictBool | None = None


class BatchSend(_Open):
    """``POST /messages/batch``: one message template, sent once per entry of ``paras``
    (each names a ``room`` or a ``receiver``; its values fill the template)."""

    message: Any = Field(json_schema_extra={"not": {"type": "null"}})
    messageType: str = Field(min_length=1, max_length=64)
    paras: list[dict[str, str | int | float | bool]] = Field(min_length=1)
    sender: str | None = Field(default=None, min_length=1, max_length=255)
    push: StrictBool | None = None
    skipTotalBadge: StrictBool | None = None


class HideMessages(BaseModel):
    room: str = Field(min_length=1, max_length=255)
    messages: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(min_length=1)


class HideRoom(BaseModel):
    room: str = Field(min_length=1, max_length=255)


class HideBySender(BaseModel):
    room: str = Field(min_length=1, max_length=255)
    sender: str = Field(min_length=1, max_length=255)


class ReactionAdd(BaseModel):
    reaction: str = Field(min_length=1, max_length=64)


class BadgesByTags(BaseModel):
    tags: _Tags = None


class BadgesByTagsAndTime(BaseModel):
    tags: _Tags = None
    beforeTime: str | float = Field(description="ISO-8601 time or epoch milliseconds")


class TokenBadges(BaseModel):
    tokens: list[str] = Field(max_length=100)


_SearchType = Annotated[str, Field(json_schema_extra={"enum": list(SEARCH_TYPES)})]


class Search(BaseModel):
    keyword: str = Field(min_length=1, max_length=200, pattern=r"\S")
    type: _SearchType | list[_SearchType] | None = None
    roomTags: list[_Tag] | None = None
    limit: int | None = Field(default=None, ge=0)
    room: str | None = Field(default=None, max_length=255)
