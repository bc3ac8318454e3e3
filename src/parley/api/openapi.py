"""What ``/openapi.json`` says about the REST API beyond what FastAPI reads off the
handlers: the contract's envelopes (§1.3), typed results of the main objects (§4), every
error status of the error table, and which credentials each operation takes (the
permission table).

Success bodies are ``{"RC": 0, "RM": "OK", "result": ...}``; a route names its result
with ``returns(Model)`` (the generic envelope otherwise). Error bodies are
``{"RC", "RM", "error", "message"}``; they are described once, under
``components/responses``, and every operation refers to them. The models only describe
the wire; handlers never validate against them (they render dicts), so they cost
nothing per request. Result models allow extra fields: IMKIT objects carry the custom
fields callers store.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field

from parley.api.errors import STATUS_BY_CLASS
from parley.api.permissions import access_for
from parley.api.schemas import ErrorBody
from parley.services.auth import Access
from parley.services.files import _BUCKET, _FILE_ID
from parley.services.history import TIME_FIELDS
from parley.services.prefs import ROOM_PREF_KEYS
from parley.services.rooms import SORT_KEYS
from parley.services.users import MAX_USER_ID

T = TypeVar("T")

# -- result models (contract §4) ----------------------------------------------------------


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Client(_Wire):
    """The Client object (§4.1); a token and its expiry only when one was issued or bound."""

    id_: str = Field(alias="_id")
    id: str
    appID: str
    nickname: str | None
    avatarUrl: str | None
    description: str | None
    isRobot: bool
    lastLoginTimeMS: int
    createdAtMS: int
    updatedAtMS: int


class MemberProperty(_Wire):
    client: str
    badge: int
    role: str | None = None


class Room(_Wire):
    """The Room object (§4.2) as the caller sees it."""

    id_: str = Field(alias="_id")
    id: str
    appID: str
    roomType: str | None
    roomTags: list[str]
    members: list[dict[str, Any]]
    memberProperties: list[MemberProperty]
    managers: list[str]
    status: int
    createdTimeMS: int
    updatedAtMS: int


class Message(_Wire):
    """The Message object (§4.3). A message hidden from the room is a stub of its ids
    and times, hence the optional fields."""

    id_: str = Field(alias="_id")
    id: str
    appID: str
    room: str
    messageType: str | None = None
    sender: dict[str, Any] | None = None
    createdAtMS: int | None = None
    updatedAtMS: int


class Group(_Wire):
    """The Group object (§4.4)."""

    id_: str = Field(alias="_id")
    id: str
    nickname: str | None
    members: list[str]


class File(_Wire):
    """The File object (§4.8), with the URLs that open it."""

    id_: str = Field(alias="_id")
    id: str
    appID: str
    length: int
    md5: str
    filename: str
    mimetype: str
    bucketName: str
    url: str


class RoomPref(_Wire):
    """A RoomPref (§4.2): only the preferences set are present."""

    room: str


class Count(_Wire):
    count: int


class Page(_Wire, Generic[T]):
    """A list result (§1.3)."""

    totalCount: int
    data: list[T]


class Ok(BaseModel, Generic[T]):
    """The success envelope with a typed result."""

    RC: int = Field(0, ge=0, le=0)
    RM: str
    result: T


class Health(BaseModel):
    status: str


def returns(result: Any) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route whose result is ``result`` (a model, ``Page[Model]``…)."""
    return {200: {"model": Ok[result], "description": "OK"}}


def body_of(model: type[BaseModel], *, required: bool = True) -> dict[str, Any]:
    """``openapi_extra=`` for a route that reads its JSON body itself: ``model`` is what
    the body should be (documentation only; the service checks the fields). An optional
    body may also be JSON ``null``, which the route takes for no body."""
    schema = model.model_json_schema()
    if not required:
        schema = {"anyOf": [schema, {"type": "null"}]}
    content = {"application/json": {"schema": schema}}
    return {"requestBody": {"required": required, "content": content}}


# -- errors and credentials ----------------------------------------------------------------

# What each status means across the API; a route answers any of them (the permission
# table and the services decide which apply, per request).
ERROR_MEANINGS: dict[int, str] = {
    400: "The request is malformed or breaks a rule (INVALID_REQUEST, MISSING_PARAMETER…)",
    401: "Credentials are missing or invalid",
    403: "The credentials may not do this",
    404: "What the request names does not exist (or is not the caller's to see)",
    409: "The request conflicts with the current state",
    413: "The body or result is too large",
    429: "Too many requests: retry after retryAfter seconds",
    503: "A backing service is unavailable: retry shortly",
}
# The error table's statuses must all be described: a new status there shows up here.
assert {status for _, status in STATUS_BY_CLASS} <= set(ERROR_MEANINGS)

SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "ApiKey": {"type": "apiKey", "in": "header", "name": "IM-API-KEY"},
    "ClientKey": {"type": "apiKey", "in": "header", "name": "IM-CLIENT-KEY"},
    "UserToken": {"type": "apiKey", "in": "header", "name": "IM-Authorization"},
}
SECURITY_BY_ACCESS: dict[Access, list[dict[str, list[str]]]] = {
    Access.PUBLIC: [],
    Access.ADMIN: [{"ApiKey": []}],
    # A user's token with the app's Client Key; the API Key acts as admin.
    Access.USER: [{"ClientKey": [], "UserToken": []}, {"ApiKey": []}],
    Access.CLIENT_KEY: [{"ClientKey": []}],
}


# Path parameters as the services check them. Ids are printable text without "/" (a
# slash could not travel in the path); the services accept any printable Unicode, the
# description names the ASCII part of it, which is what ids are in practice.
_ID = "^[ -.0-~]*[!-.0-~][ -.0-~]*$"
PATH_PARAMETERS: dict[str, dict[str, Any]] = {
    "room_id": {"type": "string", "pattern": _ID, "maxLength": 255},
    "client_id": {"type": "string", "pattern": _ID, "maxLength": MAX_USER_ID},
    "invitee": {"type": "string", "pattern": _ID, "maxLength": MAX_USER_ID},
    "message_id": {"type": "string", "pattern": _ID, "maxLength": 64},
    "group": {"type": "string", "pattern": _ID, "maxLength": 255},
    "key": {"type": "string", "pattern": _ID, "maxLength": 255},
    "bucket": {"type": "string", "pattern": f"^{_BUCKET.pattern}$"},
    "file_id": {"type": "string", "pattern": f"^{_FILE_ID.pattern}$"},
}
# Query parameters whose values the services check against a set or a grammar, by name
# (they mean the same on every operation that takes them). ``q`` and ``pref`` are
# filters written as JSON objects (contract §1.4).
_SORT_KEY = f"[-+]?({'|'.join(SORT_KEYS)})"
_JSON_OBJECT = {"application/json": {"schema": {"type": "object"}}}
QUERY_PARAMETERS: dict[str, dict[str, Any]] = {
    "timeRangeField": {"schema": {"type": "string", "enum": ["", *TIME_FIELDS]}},
    "sortOrder": {"schema": {"type": "string", "enum": ["", "asc", "desc"]}},
    "sort": {
        "schema": {
            "type": "string",
            "maxLength": 100,
            "pattern": f"^ *({_SORT_KEY}( +{_SORT_KEY})*)? *$",
        }
    },
    "q": {"content": _JSON_OBJECT},
    "pref": {"content": _JSON_OBJECT},
}
# Under /roomPrefs, {key} names one of the room preferences.
ROOM_PREF_KEY = {"type": "string", "enum": list(ROOM_PREF_KEYS)}


def _error_components() -> dict[str, dict[str, Any]]:
    body = {"$ref": "#/components/schemas/ErrorBody"}
    return {
        f"Error{status}": {
            "description": meaning,
            "content": {"application/json": {"schema": body}},
        }
        for status, meaning in ERROR_MEANINGS.items()
    }


def _drop_null(parameter: dict[str, Any]) -> None:
    """An optional parameter is one left out: a query string has no null (FastAPI writes
    ``X | None`` parameters as ``anyOf [X, null]``)."""
    schema = parameter.get("schema", {})
    branches = [b for b in schema.get("anyOf", []) if b != {"type": "null"}]
    if "anyOf" in schema and len(branches) == 1:
        rest = {k: v for k, v in schema.items() if k != "anyOf"}
        parameter["schema"] = {**rest, **branches[0]}


def _describe(operation: dict[str, Any], method: str, path: str) -> None:
    responses = operation.setdefault("responses", {})
    # Parley answers bad input with 400 in the error shape; FastAPI's 422 never happens.
    responses.pop("422", None)
    for status in ERROR_MEANINGS:
        responses[str(status)] = {"$ref": f"#/components/responses/Error{status}"}
    for parameter in operation.get("parameters", []):
        _drop_null(parameter)
        if parameter["in"] == "query" and parameter["name"] in QUERY_PARAMETERS:
            parameter.pop("schema", None)
            parameter.update(QUERY_PARAMETERS[parameter["name"]])
        if parameter["in"] == "path" and parameter["name"] in PATH_PARAMETERS:
            room_pref = parameter["name"] == "key" and path.startswith("/roomPrefs/")
            parameter["schema"] = ROOM_PREF_KEY if room_pref else PATH_PARAMETERS[parameter["name"]]
    access = access_for(method.upper(), path)
    if access is not None:
        operation["security"] = SECURITY_BY_ACCESS[access]


def openapi_builder(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """``app.openapi``: FastAPI's description, completed as the module docstring says."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        components = schema.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        schemas["ErrorBody"] = ErrorBody.model_json_schema()
        components["responses"] = _error_components()
        components["securitySchemes"] = SECURITY_SCHEMES
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                _describe(operation, method, path)
        app.openapi_schema = schema
        return schema

    return build
