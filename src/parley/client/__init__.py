"""Python client for Parley (and any IMKIT Platform API server).

- :class:`AdminClient` — for a customer's backend, with the secret API Key.
- :class:`Client` — acts as one user, with the public Client Key and that user's token.

Every failure raises :class:`ParleyAPIError`, which carries the contract's ``error`` code,
the HTTP status and the message. Both clients are context managers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

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
        try:
            response = self._http.request(method, path, json=json, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise ParleyAPIError(0, "CONNECTION_ERROR", str(exc)) from exc
        try:
            body = response.json()
        except ValueError:
            raise ParleyAPIError(
                response.status_code, "BAD_RESPONSE", response.text[:200]
            ) from None
        if response.is_error or not isinstance(body, dict) or body.get("RC", 0) != 0:
            fields: dict[str, Any] = body if isinstance(body, dict) else {}
            error: Any = fields.get("error")
            message: Any = fields.get("message")
            if isinstance(error, dict):  # the older {"error": {"code", "message"}} shape
                error, message = error.get("code"), error.get("message")
            raise ParleyAPIError(
                response.status_code,
                str(error or "UNKNOWN_ERROR"),
                str(message or response.reason_phrase),
                body,
            )
        return body.get("result")


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

    def me(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/me")
        return result

    def update_me(self, **fields: Any) -> dict[str, Any]:
        """Change the user's own ``nickname``, ``avatarUrl``, ``description`` or custom fields."""
        result: dict[str, Any] = self._call("POST", "/me", json=fields)
        return result


def _quote(segment: str) -> str:
    from urllib.parse import quote

    return quote(segment, safe="")
