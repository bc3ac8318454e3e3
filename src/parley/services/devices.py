"""The current user's devices and sessions: push subscriptions, mute list, notification
switch, logout (contract §3.2). Push tokens are stored here for the push feature."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select

from parley.services.auth import Principal
from parley.services.clock import now_ms
from parley.services.errors import InvalidRequest, NotFound
from parley.services.params import acting_user
from parley.services.prefs import require_acting_user
from parley.services.users import UserService
from parley.storage.db import Database
from parley.storage.tables import DeviceRow, RoomRow

DEVICE_TYPES = ("ios", "android", "fcm", "web", "ios-voip")


def _text(value: Any, name: str, longest: int) -> str:
    if not isinstance(value, str) or not value or len(value) > longest:
        raise InvalidRequest(
            f"{name} must be a string of 1 to {longest} characters", code="MISSING_PARAMETER"
        )
    return value


class DeviceService:
    def __init__(self, db: Database, users: UserService) -> None:
        self._db = db
        self._users = users

    async def subscribe(self, caller: Principal, body: dict[str, Any]) -> dict[str, Any]:
        user_id = acting_user(caller)
        kind = body.get("type")
        if kind not in DEVICE_TYPES:
            raise InvalidRequest(f"type must be one of {', '.join(DEVICE_TYPES)}")
        token = _text(body.get("token"), "token", 4096)
        device_id = _text(body.get("deviceId") or token[:255], "deviceId", 255)
        async with self._db.write() as s:
            await require_acting_user(s, caller)
            row = await s.get(DeviceRow, (caller.app_id, user_id, device_id))
            if row is None:
                s.add(
                    DeviceRow(
                        app_id=caller.app_id,
                        user_id=user_id,
                        device_id=device_id,
                        type=kind,
                        token=token,
                        updated_at=now_ms(),
                    )
                )
            else:
                row.type, row.token, row.updated_at = kind, token, now_ms()
        return {}

    async def unsubscribe(self, caller: Principal, body: dict[str, Any]) -> dict[str, Any]:
        user_id = acting_user(caller)
        device_id = body.get("deviceId")
        # An unknown type matches no device: a mistake to report, not "nothing removed".
        if body.get("type") is not None and body["type"] not in DEVICE_TYPES:
            raise InvalidRequest(f"type must be one of {', '.join(DEVICE_TYPES)}")
        async with self._db.write() as s:
            query = delete(DeviceRow).where(
                DeviceRow.app_id == caller.app_id, DeviceRow.user_id == user_id
            )
            if device_id is not None:
                query = query.where(DeviceRow.device_id == _text(device_id, "deviceId", 255))
            if body.get("type") is not None:
                query = query.where(DeviceRow.type == body["type"])
            result: Any = await s.execute(query)
        return {"n": result.rowcount or 0, "ok": 1}

    async def devices(self, app_id: str, user_id: str) -> list[dict[str, Any]]:
        async with self._db.read() as s:
            rows = (
                (
                    await s.execute(
                        select(DeviceRow).where(
                            DeviceRow.app_id == app_id, DeviceRow.user_id == user_id
                        )
                    )
                )
                .scalars()
                .all()
            )
        return [{"deviceId": r.device_id, "type": r.type} for r in rows]

    async def logout(self, caller: Principal, device_id: str | None) -> dict[str, Any]:
        """Revoke the token of this request and drop this device's push subscription."""
        user_id = acting_user(caller)
        if caller.token_hash is None:
            raise InvalidRequest("Log out with the user's own token, not the API Key")
        revoked = await self._users.revoke_tokens_by_digest(
            caller.app_id, user_id, only=caller.token_hash
        )
        if device_id:
            await self.unsubscribe(caller, {"deviceId": device_id})
        return revoked[0] if revoked else {}

    async def logout_others(self, caller: Principal, device_id: str | None) -> dict[str, Any]:
        """Revoke every other token of the user and every other device."""
        user_id = acting_user(caller)
        if caller.token_hash is None:
            raise InvalidRequest("Log out with the user's own token, not the API Key")
        revoked = await self._users.revoke_tokens_by_digest(
            caller.app_id, user_id, keep=caller.token_hash
        )
        async with self._db.write() as s:
            query = delete(DeviceRow).where(
                DeviceRow.app_id == caller.app_id, DeviceRow.user_id == user_id
            )
            if device_id:
                query = query.where(DeviceRow.device_id != device_id)
            await s.execute(query)
        return {"data": revoked}

    async def set_muted(self, caller: Principal, room_id: str, muted: bool) -> dict[str, Any]:
        """``/me/mute/{room}``: no push for this room (the room stays readable)."""
        user_id = acting_user(caller)
        async with self._db.read() as s:
            if await s.get(RoomRow, (caller.app_id, room_id)) is None:
                raise NotFound(f"Room {room_id!r} not found", code="ROOM_NOT_FOUND")
        current = (await self._users.profile(caller.app_id, user_id)).get("mute") or []
        if not muted and room_id not in current:
            raise InvalidRequest("This room is not muted", code="ROOM_NOT_MUTED")

        def change(profile: dict[str, Any]) -> dict[str, Any]:
            rooms = [r for r in profile.get("mute") or [] if r != room_id]
            profile["mute"] = [*rooms, room_id] if muted else rooms
            return profile

        return await self._users.set_server_kept(caller.app_id, user_id, change)

    async def set_notifications(self, caller: Principal, enabled: bool) -> dict[str, Any]:
        user_id = acting_user(caller)

        def change(profile: dict[str, Any]) -> dict[str, Any]:
            profile["notificationEnabled"] = enabled
            return profile

        return await self._users.set_server_kept(caller.app_id, user_id, change)
