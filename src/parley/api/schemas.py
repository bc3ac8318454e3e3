"""Wire models, named for their direction. Request models describe what the edge accepts
(and document it in ``/openapi.json``); unknown fields are kept, as IMKIT stores custom
fields verbatim. The rules themselves live in the services."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


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
    issueAccessToken: bool = False
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
    botMode: bool | None = None
    extParams: str | None = None
    systemMessage: bool | None = None
    invitationRequired: bool | None = None


class RoomUpdate(_Open):
    name: str | None = None
    cover: str | None = None
    description: str | None = None
    roomTags: list[str] | None = None
    webhook: str | None = None
    botMode: bool | None = None
    extParams: str | None = None
    opening: int | None = None
    status: int | None = None
    owner: str | None = None
    managers: list[str] | None = None


class RoomJoin(BaseModel):
    systemMessage: bool = True


class MembersAdd(BaseModel):
    invitees: list[str] = Field(min_length=1)
    systemMessage: bool = False
    invitationRequired: bool = False


class MembersRemove(BaseModel):
    members: list[str] = Field(min_length=1)
    systemMessage: bool = False


class MemberPropertyUpdate(BaseModel):
    property: str = Field(min_length=1, max_length=64)
    value: Any


class LastReadUpdate(BaseModel):
    message: str = Field(min_length=1, max_length=64)


class InvitationsCancel(BaseModel):
    invitees: list[str] = Field(min_length=1)
    systemMessage: bool = True


class RoomPrefUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tags: list[str] | None = None
    tagColors: dict[str, str] | None = None
    folder: str | None = None
    muted: bool | None = None
    sticky: bool | None = None
    hidden: bool | None = None
    translation: bool | None = None

    def fields(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


class DeviceSubscription(BaseModel):
    type: str = Field(min_length=1, max_length=16)
    token: str | None = Field(default=None, max_length=4096)
    deviceId: str | None = Field(default=None, max_length=255)
    clientId: str | None = Field(default=None, max_length=255)


class GroupUpsert(_Open):
    id: str | None = Field(default=None, alias="_id", min_length=1, max_length=255)
    nickname: str | None = Field(default=None, max_length=255)
    avatarUrl: str | None = Field(default=None, max_length=4096)
    members: list[str] | None = None


class Typing(BaseModel):
    message: str | None = Field(default=None, max_length=1000)
