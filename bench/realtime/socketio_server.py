"""Baseline: python-socketio's AsyncServer (ASGI) on uvicorn, websocket transport only,
with room broadcast. A socket authenticates with CONNECT auth ``{clientKey, token}``
against the users file and joins that user's rooms; ``chat message`` ``{room, ...}`` is
emitted to the room (sender included, as Parley does) and acknowledged. uvicorn runs with
the WebSocket options Parley gives it.

    python socketio_server.py PORT USERS.json CLIENT_KEY   (users: {token: [room, ...]})
"""

import json
import sys
from pathlib import Path
from typing import Any

import socketio
import uvicorn

port, users_file, client_key = sys.argv[1:4]
rooms_of: dict[str, list[str]] = json.loads(Path(users_file).read_text())

sio = socketio.AsyncServer(async_mode="asgi", transports=["websocket"])


@sio.event
async def connect(sid: str, environ: dict[str, Any], auth: Any) -> bool:
    auth = auth if isinstance(auth, dict) else {}
    rooms = rooms_of.get(auth.get("token", ""))
    if rooms is None or auth.get("clientKey") != client_key:
        return False
    for room in rooms:
        await sio.enter_room(sid, room)
    return True


@sio.on("chat message")
async def chat_message(sid: str, body: dict[str, Any]) -> dict[str, Any]:
    await sio.emit("chat message", body, room=body["room"])
    return {"RC": 0, "RM": "OK"}


if __name__ == "__main__":
    print("listening", flush=True)
    uvicorn.run(
        socketio.ASGIApp(sio),
        host="127.0.0.1",
        port=int(port),
        log_level="warning",
        # As Parley runs uvicorn: no permessage-deflate, no WebSocket-level pings (the
        # Engine.IO heartbeat finds dead sockets).
        ws_per_message_deflate=False,
        ws_ping_interval=None,
    )
