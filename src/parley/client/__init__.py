"""Python client for Parley (and any IMKIT Platform API server).

- :class:`AdminClient` — for a customer's backend, with the secret API Key.
- :class:`Client` — acts as one user, with the public Client Key and that user's token.

Every failure raises :class:`ParleyAPIError`, which carries the contract's ``error`` code,
the HTTP status and the message. Both clients are context managers.

Real time (events of the user's rooms, sending over the socket): ``await client.connect()``
or ``async with client.realtime() as rt`` — see :mod:`parley.client.realtime`.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:  # imported when used: the REST client does not need websockets
    from parley.client.realtime import Realtime

__all__ = ["AdminClient", "Client", "ParleyAPIError"]


class ParleyAPIError(Exception):
    """The server refused a request (or could not be reached: ``error`` is then
    ``CONNECTION_ERROR`` and ``status`` 0)."""

    def __init__(self, status: int, error: str, message: str, body: Any = None) -> None:
        super().__init__(f"{status} {error}: {message}")
        self.status = status
        self.error = error
        self.message = message
        self.body = body

    @property
    def retry_after(self) -> int | None:
        """Seconds to wait, for ``RATE_LIMIT_EXCEEDED``."""
        if isinstance(self.body, dict) and isinstance(self.body.get("retryAfter"), int):
            return int(self.body["retryAfter"])
        return None


class _Base:
    def __init__(
        self,
        domain: str,
        headers: dict[str, str],
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=domain.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> _Base:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        response = self._send(method, path, json=json, params=params, headers=headers)
        return self._result(response)

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ParleyAPIError(0, "CONNECTION_ERROR", str(exc)) from exc

    @staticmethod
    def _result(response: httpx.Response) -> Any:
        """The ``result`` of a success envelope; anything else as a ParleyAPIError."""
        try:
            body = response.json()
        except ValueError:
            raise ParleyAPIError(
                response.status_code, "BAD_RESPONSE", response.text[:200]
            ) from None
        if response.is_error or not isinstance(body, dict) or body.get("RC", 0) != 0:
            raise _error_of(response.status_code, body, response.reason_phrase)
        return body.get("result")


def _error_of(status: int, body: Any, reason: str) -> ParleyAPIError:
    """The error an answer carries, in either of its shapes: REST's ``{error, message}``
    or the older ``{error: {code, message}}`` that socket acks also use."""
    fields: dict[str, Any] = body if isinstance(body, dict) else {}
    error: Any = fields.get("error")
    message: Any = fields.get("message")
    if isinstance(error, dict):
        error, message = error.get("code"), error.get("message")
    return ParleyAPIError(status, str(error or "UNKNOWN_ERROR"), str(message or reason), body)


class _RoomCalls(_Base):
    """Rooms, members, invitations and preferences: the calls both clients share. An
    ``AdminClient`` acts as a user in them when built with ``acting_as=user_id``."""

    def create_room(
        self, *, invitees: list[str] | str | None = None, **fields: Any
    ) -> dict[str, Any]:
        """``POST /rooms/createAndJoin``: the caller joins; ``invitees`` are added (or
        invited, with ``invitationRequired=True``)."""
        body = {**fields}
        if invitees is not None:
            body["invitee"] = invitees
        result: dict[str, Any] = self._call("POST", "/rooms/createAndJoin", json=body)
        return result

    def rooms(self, **params: Any) -> dict[str, Any]:
        """``GET /rooms``: ``skip``, ``limit``, ``sort``, ``updatedAfter``, ``q`` and
        ``pref`` (dicts are sent as JSON), ``sortUnreadFirst``."""
        import json

        query = {k: json.dumps(v) if isinstance(v, dict) else v for k, v in params.items()}
        result: dict[str, Any] = self._call("GET", "/rooms", params=query)
        return result

    def room(self, room_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/rooms/{_quote(room_id)}")
        return result

    def update_room(self, room_id: str, **fields: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._call("PUT", f"/rooms/{_quote(room_id)}", json=fields)
        return result

    def delete_room(self, room_id: str) -> None:
        self._call("DELETE", f"/rooms/{_quote(room_id)}")

    def join_room(self, room_id: str, *, system_message: bool = True) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "POST", f"/rooms/{_quote(room_id)}/join", json={"systemMessage": system_message}
        )
        return result

    def add_members(
        self,
        room_id: str,
        invitees: list[str],
        *,
        system_message: bool = False,
        invitation_required: bool = False,
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "POST",
            f"/rooms/{_quote(room_id)}/members",
            json={
                "invitees": invitees,
                "systemMessage": system_message,
                "invitationRequired": invitation_required,
            },
        )
        return result

    def remove_members(
        self, room_id: str, members: list[str], *, system_message: bool = False
    ) -> dict[str, Any]:
        """Remove members; your own id leaves the room."""
        result: dict[str, Any] = self._call(
            "POST",
            f"/rooms/{_quote(room_id)}/delete/members",
            json={"members": members, "systemMessage": system_message},
        )
        return result

    def set_member_property(
        self, room_id: str, client_id: str, prop: str, value: Any
    ) -> dict[str, Any]:
        """``role`` (admin|member) or a custom property of a member."""
        result: dict[str, Any] = self._call(
            "PUT",
            f"/rooms/{_quote(room_id)}/member/{_quote(client_id)}",
            json={"property": prop, "value": value},
        )
        return result

    def mark_read(self, room_id: str, message_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "PUT", f"/rooms/{_quote(room_id)}/lastRead", json={"message": message_id}
        )
        return result

    def invitations(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/rooms/invitations")
        return result

    def decline(self, room_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("DELETE", f"/rooms/{_quote(room_id)}/invitations")
        return result

    def set_room_pref(self, room_id: str, **prefs: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/roomPrefs/{_quote(room_id)}", json=prefs)
        return result

    def set_pref(self, key: str, data: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/me/pref/{_quote(key)}", json=data)
        return result

    def prefs(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/me/prefs")
        return result

    # -- messages (contract §3.7) ------------------------------------------------------

    def send(
        self,
        room_id: str,
        message: Any = None,
        *,
        message_type: str = "text",
        client_message_id: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """``POST /rooms/{id}/message``. ``client_message_id`` makes a retry safe: the
        server returns the message it stored the first time instead of a second one."""
        body = {"messageType": message_type, **fields}
        if message is not None:
            body["message"] = message
        if client_message_id is not None:
            body["clientMessageId"] = client_message_id
        return self._message_call("POST", f"/rooms/{_quote(room_id)}/message", body)

    def edit(self, room_id: str, message_id: str, **fields: Any) -> dict[str, Any]:
        body = {"_id": message_id, **fields}
        return self._message_call("POST", f"/rooms/{_quote(room_id)}/message", body)

    def recall(self, room_id: str, message_id: str) -> dict[str, Any]:
        body = {"_id": message_id, "messageType": "recall"}
        return self._message_call("POST", f"/rooms/{_quote(room_id)}/message", body)

    def delete_message(self, room_id: str, message_id: str = "_all") -> dict[str, Any]:
        path = f"/rooms/{_quote(room_id)}/messages/{_quote(message_id)}"
        return self._message_call("DELETE", path)

    def history(self, room_id: str, **params: Any) -> dict[str, Any]:
        """``GET /rooms/{id}/messages/v3``: ``limit``, ``beforeMessage``, ``afterMessage``,
        ``afterTime``, ``timeRangeField``, ``sortOrder``."""
        path = f"/rooms/{_quote(room_id)}/messages/v3"
        return self._message_call("GET", path, params=params)

    def messages_around(
        self, room_id: str, message_id: str, *, before: int = 10, after: int = 10
    ) -> dict[str, Any]:
        path = f"/rooms/{_quote(room_id)}/messages/{_quote(message_id)}"
        return self._message_call("GET", path, params={"before": before, "after": after})

    def count_since(self, room_id: str, time_ms: int) -> int:
        path = f"/rooms/{_quote(room_id)}/count"
        return int(self._message_call("GET", path, params={"timeInMS": time_ms})["count"])

    def recent_messages(self, limit: int = 20) -> dict[str, Any]:
        return self._message_call("GET", "/messages/recent", params={"limit": limit})

    def hide_for_me(self, room_id: str, message_ids: list[str] | None = None) -> dict[str, Any]:
        """``POST /messages/user-delete`` (or every message of the room when no ids)."""
        if message_ids is None:
            body = {"room": room_id}
            return self._message_call("POST", "/messages/user-delete/all-in-room", body)
        return self._message_call(
            "POST", "/messages/user-delete", {"room": room_id, "messages": message_ids}
        )

    def hidden_for_me(self, room_id: str) -> dict[str, Any]:
        return self._message_call("GET", "/messages/user-delete", params={"room": room_id})

    def set_hidden(self, message_id: str, hidden: bool = True) -> dict[str, Any]:
        method = "POST" if hidden else "DELETE"
        return self._message_call(method, f"/messages/{_quote(message_id)}/hidden")

    def pin(self, message_id: str, pinned: bool = True) -> dict[str, Any]:
        method = "POST" if pinned else "DELETE"
        return self._message_call(method, f"/messages/{_quote(message_id)}/pin")

    def pinned(self, room_id: str) -> dict[str, Any]:
        return self._message_call("GET", f"/rooms/{_quote(room_id)}/pined-messages")

    def react(self, message_id: str, reaction: str, *, add: bool = True) -> dict[str, Any]:
        path = f"/messages/{_quote(message_id)}/reaction"
        if add:
            return self._message_call("POST", path, {"reaction": reaction})
        return self._message_call("DELETE", path, params={"reaction": reaction})

    def search(self, keyword: str, types: list[str] | None = None, **fields: Any) -> dict[str, Any]:
        """``POST /search``: ``types`` of messages, files, roomName, roomMember, roomTags,
        roomPrefTags, roomPrefFolder; ``room``, ``roomTags``, ``limit``."""
        body = {"keyword": keyword, "type": types or ["messages"], **fields}
        return self._message_call("POST", "/search", body)

    # -- unread counts (contract §3.8) -------------------------------------------------

    def badge(self, room_tags: list[str] | None = None) -> int:
        result = self._message_call("GET", "/me/badge", params={"roomTags": room_tags or []})
        return int(result["badge"])

    def badges_by_tags(
        self, tags: list[str] | None = None, *, before: datetime | str | int | None = None
    ) -> dict[str, Any]:
        if before is None:
            return self._message_call("POST", "/badges/byRoomTags", {"tags": tags or []})
        body = {"tags": tags or [], "beforeTime": _iso(before)}
        return self._message_call("POST", "/badges/byRoomTagsAndTime", body)

    def _message_call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._call(method, path, json=body, params=params)
        return result


def _iso(value: datetime | str | int) -> str | int:
    return value.isoformat() if isinstance(value, datetime) else value


class AdminClient(_RoomCalls):
    """The customer's backend: full rights over one application's users (API Key)."""

    def __init__(
        self, domain: str, api_key: str, *, acting_as: str | None = None, **options: Any
    ) -> None:
        headers = {"IM-API-KEY": api_key}
        if acting_as:
            headers["IM-CLIENT-ID"] = acting_as
        super().__init__(domain, headers, **options)

    def health(self) -> bool:
        return bool(self._http.get("/health").status_code == 200)

    def create_user(
        self,
        user_id: str,
        *,
        nickname: str | None = None,
        avatar_url: str | None = None,
        description: str | None = None,
        issue_token: bool = False,
        token: str | None = None,
        expiration: datetime | str | int | None = None,
        **custom: Any,
    ) -> dict[str, Any]:
        """Create or update a user. ``issue_token`` gets a server-issued token; ``token``
        (+ ``expiration``) binds one of your own. The result carries ``token`` then."""
        body: dict[str, Any] = {"_id": user_id, **custom}
        for key, value in (
            ("nickname", nickname),
            ("avatarUrl", avatar_url),
            ("description", description),
            ("token", token),
        ):
            if value is not None:
                body[key] = value
        if issue_token:
            body["issueAccessToken"] = True
        if expiration is not None:
            body["expirationDate"] = _iso(expiration)
        result: dict[str, Any] = self._call("POST", "/admin/clients", json=body)
        return result

    def create_users(self, users: list[dict[str, Any]]) -> int:
        """Create or update many users (``_id``, ``nickname``, ``avatarUrl``); no tokens."""
        return int(self._call("POST", "/admin/clients/list", json={"data": users})["count"])

    def list_users(
        self, q: dict[str, Any] | None = None, *, limit: int = 50, skip: int = 0
    ) -> dict[str, Any]:
        """``{"totalCount": n, "data": [user, ...]}``; ``q`` is the MongoDB-style filter."""
        import json

        params: dict[str, Any] = {"limit": limit, "skip": skip}
        if q is not None:
            params["q"] = json.dumps(q)
        result: dict[str, Any] = self._call("GET", "/admin/clients", params=params)
        return result

    def get_user(self, user_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/admin/clients/{_quote(user_id)}")
        return result

    def bind_token(
        self, user_id: str, token: str, expiration: datetime | str | int
    ) -> dict[str, Any]:
        """Give the user this token (its earlier tokens stop working at once)."""
        result: dict[str, Any] = self._call(
            "PUT",
            f"/admin/clients/{_quote(user_id)}/token",
            json={"token": token, "expirationDate": _iso(expiration)},
        )
        return result

    def create_admin_room(self, room_id: str | None = None, **fields: Any) -> dict[str, Any]:
        """``POST /rooms``: a room with the listed ``members`` (the caller does not join)."""
        body = {**fields, **({"_id": room_id} if room_id else {})}
        result: dict[str, Any] = self._call("POST", "/rooms", json=body)
        return result

    def upsert_group(
        self, group_id: str, nickname: str, members: list[str], **fields: Any
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "POST",
            "/admin/groups",
            json={"_id": group_id, "nickname": nickname, "members": members, **fields},
        )
        return result

    def groups(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/admin/groups")
        return result

    def revoke_tokens(self, user_id: str, token: str | None = None) -> int:
        """Revoke one token of the user, or all of them; returns how many were revoked."""
        body = {"token": token} if token is not None else {}
        result = self._call("DELETE", f"/admin/clients/{_quote(user_id)}/token", json=body)
        return int(result["revokedTokens"])

    def send_as(
        self, room_id: str, sender: str, message: Any, message_type: str = "text", **fields: Any
    ) -> dict[str, Any]:
        """``POST /messages``: a message from any existing user."""
        body = {"room": room_id, "sender": sender, "message": message, **fields}
        body["messageType"] = message_type
        result: dict[str, Any] = self._call("POST", "/messages", json=body)
        return result

    def send_batch(
        self,
        sender: str,
        message: Any,
        paras: list[dict[str, Any]],
        message_type: str = "text",
        **fields: Any,
    ) -> dict[str, Any]:
        """``POST /messages/batch``: queued; returns ``{batchID, count}``."""
        body = {"sender": sender, "message": message, "messageType": message_type, **fields}
        body["paras"] = paras
        result: dict[str, Any] = self._call("POST", "/messages/batch", json=body)
        return result

    def batch(self, batch_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/messages/batch", params={"batchID": batch_id})
        return result

    def all_messages(self, **params: Any) -> dict[str, Any]:
        """``GET /admin/messages``: ``startDate``, ``endDate``, ``limit``."""
        query = {k: _iso(v) for k, v in params.items()}
        result: dict[str, Any] = self._call("GET", "/admin/messages", params=query)
        return result

    def me(self, user_id: str) -> dict[str, Any]:
        """GET /me as ``user_id`` (the API Key names the user in IM-CLIENT-ID)."""
        result: dict[str, Any] = self._call("GET", "/me", headers={"IM-CLIENT-ID": user_id})
        return result


class Client(_RoomCalls):
    """One user of an application: the public Client Key plus the user's token."""

    def __init__(self, domain: str, client_key: str, token: str, **options: Any) -> None:
        super().__init__(
            domain, {"IM-CLIENT-KEY": client_key, "IM-Authorization": token}, **options
        )
        self._credentials = (domain, client_key, token)

    def realtime(self, **options: Any) -> Realtime:
        """This user's real-time connection, not yet open: ``async with client.realtime()
        as rt`` opens it (or ``await rt.connect()``). ``options`` are those of
        :class:`parley.client.realtime.Realtime`."""
        from parley.client.realtime import Realtime

        domain, client_key, token = self._credentials
        return Realtime(domain, client_key, token, rest=self, **options)

    async def connect(self, **options: Any) -> Realtime:
        """The real-time connection, open; end it with ``await rt.close()``."""
        return await self.realtime(**options).connect()

    def me(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/me")
        return result

    def update_me(self, **fields: Any) -> dict[str, Any]:
        """Change the user's own ``nickname``, ``avatarUrl``, ``description`` or custom fields."""
        result: dict[str, Any] = self._call("POST", "/me", json=fields)
        return result

    def upload_file(
        self,
        bucket: str,
        data: bytes,
        *,
        filename: str = "file",
        mimetype: str = "application/octet-stream",
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``POST /files/{bucket}``: the File object, with ``url`` (and, for images,
        ``width``, ``height``, ``thumbnailUrl``). ``extra={"roomID": ...}`` makes the file
        readable by that room's members."""
        import json

        form = {"extra": json.dumps(extra)} if extra is not None else {}
        response = self._send(
            "POST",
            f"/files/{_quote(bucket)}",
            files={"file": (filename, data, mimetype)},
            data=form,
        )
        result: dict[str, Any] = self._result(response)
        return result

    def file_metadata(self, bucket: str, file_id: str) -> dict[str, Any]:
        path = f"/files/{_quote(bucket)}/{_quote(file_id)}/metadata"
        result: dict[str, Any] = self._call("GET", path)
        return result

    def download_file(self, bucket: str, file_id: str, *, thumbnail: bool = False) -> bytes:
        """The file's bytes (or its thumbnail's, a JPEG)."""
        path = f"/files/{_quote(bucket)}/{_quote(file_id)}" + ("/thumbnail" if thumbnail else "")
        response = self._send("GET", path)
        if response.is_error:
            self._result(response)  # raises the server's error
        return response.content


def _quote(segment: str) -> str:
    from urllib.parse import quote

    return quote(segment, safe="")
