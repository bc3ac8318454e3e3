"""Mass sends: ``POST /messages/batch`` queues one message template for many rooms or
receivers; ``GET /messages/batch`` lists what it sent (contract §3.7).

A batch is stored before it is acknowledged, then worked through in the background by
the node that took it — and, after a restart, by any node that finds it unfinished. Each
of its messages carries the client id ``batch:<batchID>:<index>``, so a message sent twice
(two nodes, or a crash between storing and counting) is stored once.

Per entry of ``paras``: ``room`` names the room; otherwise ``receiver`` names the user
whose direct room with the sender receives it (created when it does not exist yet).
Every ``"$name$"`` key of the entry is replaced by its value in ``message`` and ``extra``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Any

from sqlalchemy import select, update

from parley.background import cancel_and_wait
from parley.services.auth import Principal
from parley.services.clock import now_ms
from parley.services.errors import InvalidRequest, NotFound, ParleyError, TooLarge
from parley.services.ids import direct_room_id, object_id
from parley.services.message_writer import MessageWriter, Send
from parley.services.messages import MessageInput, message_public, parse_input
from parley.services.params import flag
from parley.services.rooms import RoomService
from parley.services.users import UserService, user_embedded
from parley.storage.db import Database
from parley.storage.tables import MessageBatchRow, MessageRow, RoomRow, UserRow

log = logging.getLogger("parley.batches")

MAX_PARAS = 10_000
MAX_VARIABLES = 100
MAX_LISTED = 10_000
PROGRESS_EVERY = 50  # entries between progress saves


class BatchService:
    def __init__(
        self,
        db: Database,
        users: UserService,
        rooms: RoomService,
        writer: MessageWriter,
        *,
        max_message_bytes: int,
    ) -> None:
        self._db = db
        self._users = users
        self._rooms = rooms
        self._writer = writer
        self._max_message_bytes = max_message_bytes
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def submit(self, caller: Principal, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise InvalidRequest("The body must be a JSON object", code="INVALID_BODY")
        for name in ("message", "messageType", "paras"):
            if body.get(name) is None:
                raise InvalidRequest(f"{name} is required", code="MISSING_PARAMETER")
        sender = body.get("sender") if caller.is_admin else caller.user_id
        if caller.is_admin and caller.user_id and not sender:
            sender = caller.user_id
        if not isinstance(sender, str) or not sender:
            raise InvalidRequest("sender is required with the API Key", code="MISSING_PARAMETER")
        paras = body["paras"]
        if not isinstance(paras, list) or not paras:
            raise InvalidRequest("paras must be a non-empty list", code="INVALID_BODY")
        if len(paras) > MAX_PARAS:
            raise TooLarge(f"A batch holds at most {MAX_PARAS} entries")
        for entry in paras:
            if not isinstance(entry, dict) or not (entry.get("room") or entry.get("receiver")):
                raise InvalidRequest("Each entry of paras names a room or a receiver")
            if not all(isinstance(v, str | int | float | bool) for v in entry.values()):
                raise InvalidRequest("paras values must be strings, numbers or booleans")
        flag(body, "push", default=False)
        flag(body, "skipTotalBadge", default=False)
        template = {k: v for k, v in body.items() if k not in ("paras", "sender")}
        parse_input(template, max_bytes=self._max_message_bytes, default_type=None)
        for entry in paras:  # every entry's message is checked before the batch is taken
            parse_input(
                _substituted(template, entry, self._max_message_bytes),
                max_bytes=self._max_message_bytes,
            )
        batch_id = f"batch-{object_id()}"
        now = now_ms()
        async with self._db.write() as s:
            if await s.get(UserRow, (caller.app_id, sender)) is None:
                raise NotFound(f"No user {sender}", code="CLIENT_NOT_FOUND")
            s.add(
                MessageBatchRow(
                    app_id=caller.app_id,
                    id=batch_id,
                    sender=sender,
                    spec={"template": template, "paras": paras, "admin": caller.is_admin},
                    total=len(paras),
                    done=0,
                    status="queued",
                    created_at=now,
                    updated_at=now,
                )
            )
        self._kick()
        return {"batchID": batch_id, "count": len(paras)}

    async def sent(self, caller: Principal, batch_id: Any) -> dict[str, Any]:
        if not isinstance(batch_id, str) or not batch_id:
            raise InvalidRequest("batchID is required", code="MISSING_PARAMETER")
        async with self._db.read() as s:
            batch = await s.get(MessageBatchRow, (caller.app_id, batch_id))
            if batch is None or (not caller.is_admin and batch.sender != caller.user_id):
                raise NotFound("No such batch", code="BATCH_NOT_FOUND")
            rows = list(
                (
                    await s.execute(
                        select(MessageRow)
                        .where(MessageRow.app_id == caller.app_id, MessageRow.batch_id == batch_id)
                        .order_by(MessageRow.created_at, MessageRow.id)
                        .limit(MAX_LISTED)
                    )
                ).scalars()
            )
            senders = await self._users.profiles(caller.app_id, [batch.sender], s)
        sender = senders.get(batch.sender)
        embedded = user_embedded(sender) if sender else None
        data = [message_public(r, embedded) for r in rows]
        return {
            "count": len(data),
            "total": batch.total,
            "status": batch.status,
            "data": data,
        }

    # -- the background worker ----------------------------------------------------------

    def _kick(self) -> None:
        self._wakeup.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="parley-batches")

    async def start(self) -> None:
        """Pick up batches left unfinished by a stop."""
        self._kick()

    async def close(self) -> None:
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        while True:
            self._wakeup.clear()
            async with self._db.read() as s:
                pending = list(
                    (
                        await s.execute(
                            select(MessageBatchRow.app_id, MessageBatchRow.id)
                            .where(MessageBatchRow.status.in_(("queued", "running")))
                            .order_by(MessageBatchRow.created_at)
                            .limit(10)
                        )
                    ).all()
                )
            for app_id, batch_id in pending:
                try:
                    await self._work(app_id, batch_id)
                except ParleyError:
                    log.warning("batch %s paused: the database is unavailable", batch_id)
                    await asyncio.sleep(1)
                except Exception:
                    log.exception("batch %s failed", batch_id)
                    await self._set_status(app_id, batch_id, "failed", None)
            if not pending:
                await self._wakeup.wait()

    async def _work(self, app_id: str, batch_id: str) -> None:
        async with self._db.read() as s:
            batch = await s.get(MessageBatchRow, (app_id, batch_id))
        if batch is None:
            return
        template = batch.spec["template"]
        paras = batch.spec["paras"]
        await self._set_status(app_id, batch_id, "running", batch.done)
        for index in range(batch.done, len(paras)):
            entry = paras[index]
            try:
                room_id = await self._room_for(app_id, batch.sender, entry)
                message = _substituted(template, entry, self._max_message_bytes)
                fields = parse_input(message, max_bytes=self._max_message_bytes)
                send_input = MessageInput(
                    fields.message_type,
                    fields.fields | {"clientMessageId": f"batch:{batch_id}:{index}"},
                    f"batch:{batch_id}:{index}",
                    fields.mentions,
                    None,
                )
                await self._writer.send(
                    Send(
                        app_id,
                        room_id,
                        batch.sender,
                        send_input,
                        members_only=not batch.spec.get("admin"),
                        batch_id=batch_id,
                    )
                )
            except ParleyError as error:
                if error.code == "SERVICE_UNAVAILABLE":
                    raise
                log.info("batch %s entry %d skipped: %s", batch_id, index, error.code)
            if (index + 1) % PROGRESS_EVERY == 0:
                await self._set_status(app_id, batch_id, "running", index + 1)
        await self._set_status(app_id, batch_id, "done", len(paras))

    async def _room_for(self, app_id: str, sender: str, entry: dict[str, Any]) -> str:
        if entry.get("room"):
            return str(entry["room"])
        receiver = str(entry["receiver"])
        room_id = direct_room_id(sender, receiver)
        async with self._db.read() as s:
            exists = await s.get(RoomRow, (app_id, room_id)) is not None
        if not exists:
            creator = Principal(app_id, is_admin=True, user_id=None, key_kind="api", key_id="")
            with contextlib.suppress(ParleyError):  # created by a concurrent send: fine
                await self._rooms.create(
                    creator, {"roomType": "direct", "members": [sender, receiver]}, join=False
                )
        return room_id

    async def _set_status(self, app_id: str, batch_id: str, status: str, done: int | None) -> None:
        values: dict[str, Any] = {"status": status, "updated_at": now_ms()}
        if done is not None:
            values["done"] = done
        async with self._db.write() as s:
            await s.execute(
                update(MessageBatchRow)
                .where(MessageBatchRow.app_id == app_id, MessageBatchRow.id == batch_id)
                .values(**values)
            )


def _substituted(template: dict[str, Any], entry: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    """The template with every ``$name$`` key of ``entry`` replaced by its value, in one
    pass (a value holding another ``$name$`` stays as written). Refused with 413 before
    anything is built when the result would pass ``max_bytes``: a short template and
    long values must not make the server build gigabytes."""
    variables = {k: str(v) for k, v in entry.items() if k.startswith("$") and k.endswith("$")}
    if len(variables) > MAX_VARIABLES:
        raise InvalidRequest(f"At most {MAX_VARIABLES} variables per entry")
    pattern = (
        re.compile("|".join(re.escape(n) for n in sorted(variables, key=len, reverse=True)))
        if variables
        else None
    )
    budget = [max_bytes]

    def fill(text: str) -> str:
        if pattern is None:
            return text
        grown = len(text) + sum(
            text.count(name) * (len(value) - len(name)) for name, value in variables.items()
        )
        budget[0] -= grown
        if budget[0] < 0:
            raise TooLarge(
                "A batch entry expands past the message size limit", code="MESSAGE_TOO_LARGE"
            )
        return pattern.sub(lambda found: variables[found.group()], text)

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return fill(value)
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    message = dict(template)
    if isinstance(message.get("message"), str):
        message["message"] = fill(message["message"])
    if "extra" in message:
        message["extra"] = walk(message["extra"])
    return message
