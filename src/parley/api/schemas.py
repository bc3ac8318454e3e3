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
    token: str = Field(min_length=1, max_length=4096)
    expirationDate: str | int


class TokenRevoke(BaseModel):
    token: str | None = Field(default=None, min_length=1, max_length=4096)


class ProfileUpdate(_Open):
    nickname: str | None = Field(default=None, max_length=255)
    avatarUrl: str | None = Field(default=None, max_length=4096)
    description: str | None = Field(default=None, max_length=4096)


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
