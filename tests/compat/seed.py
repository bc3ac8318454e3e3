"""What the IMKIT Postman collection expects to find in the server it is pointed at.

The collection's requests name some objects through variables (``{{token}}``,
``{{roomId}}``, ``{{clientId}}``, ``{{messageId}}``) and others literally in their bodies
(users ``user001``..``user003``, ``user123``, sender ``system``, room ``room-abc``, the
token ``token-to-revoke``). :func:`seed` creates all of them in one application through
its API Key, and returns the variables of the collection's environment:

- ``token`` is the access token of :data:`OWNER`, who owns ``roomId`` (so Update Room and
  the member changes are allowed) and sent ``messageId`` (so Recall Message is allowed);
- ``clientId`` is :data:`MEMBER`, a member of ``roomId`` whose tokens the token requests
  replace and revoke (never the owner's: Get Me and the rest keep working);
- ``roomId`` and ``messageId`` are new on every call, so a fresh set of them follows a
  request that deleted the previous ones.

:func:`seed` may be called again on the same application: users are upserted, and every
other object it makes is either new or already there.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from parley.client import AdminClient, ParleyAPIError

OWNER = "compat-owner"
MEMBER = "compat-member"
# Users that request bodies name literally: Batch Create Users creates user001..user003
# itself, but Create Group lists them as members and may run first; "system" sends the
# messages of Send Message and Batch Send Messages.
NAMED_USERS = {
    "system": "System",
    "user001": "Alice",
    "user002": "Bob",
    "user003": "Carol",
    "user123": "John Doe",
}
BATCH_ROOM = "room-abc"  # a "room" target of Batch Send Messages
REVOKED_TOKEN = "token-to-revoke"  # the token Revoke Token names in its body
SEARCHED_WORD = "hello"  # Search Messages' keyword: the seeded message contains it


def seed(domain: str, api_key: str, client_key: str) -> dict[str, str]:
    """Create (or refresh) the collection's objects; returns its environment variables."""
    admin = AdminClient(domain, api_key)
    try:
        owner = admin.create_user(OWNER, nickname="Room Owner", issue_token=True)
        admin.create_user(MEMBER, nickname="Room Member")
        # Update Token replaces the member's tokens; Revoke Token then needs this one back.
        admin.bind_token(MEMBER, REVOKED_TOKEN, datetime.now(UTC) + timedelta(days=1))
        admin.create_users([{"_id": uid, "nickname": name} for uid, name in NAMED_USERS.items()])
        _ensure_room(admin, BATCH_ROOM, name="Batch target", roomType="group", members=["system"])
        room = admin.create_admin_room(
            name="Compatibility check",
            roomType="group",
            owner=OWNER,
            members=[OWNER, MEMBER, "system"],
        )
        message = admin.send_as(room["_id"], OWNER, f"{SEARCHED_WORD}, this is the seed")
    finally:
        admin.close()
    return {
        "domain": domain.rstrip("/"),
        "apiKey": api_key,
        "clientKey": client_key,
        "token": str(owner["token"]),
        "roomId": str(room["_id"]),
        "clientId": MEMBER,
        "messageId": str(message["_id"]),
    }


def _ensure_room(admin: AdminClient, room_id: str, **fields: Any) -> None:
    try:
        admin.create_admin_room(room_id, **fields)
    except ParleyAPIError as exc:
        if exc.error != "ROOM_EXISTS":
            raise


def write_environment(template: Path, variables: dict[str, str], path: Path) -> None:
    """The collection's environment ``template`` with ``variables`` filled in, as a file
    for ``newman run -e``. A variable the template lacks is an error: the seed and the
    collection would disagree on what the requests use."""
    environment = json.loads(template.read_text())
    known = {entry["key"] for entry in environment["values"]}
    unknown = set(variables) - known
    if unknown:
        raise ValueError(f"variables the environment does not declare: {sorted(unknown)}")
    for entry in environment["values"]:
        if entry["key"] in variables:
            entry["value"] = variables[entry["key"]]
            entry["enabled"] = True
    path.write_text(json.dumps(environment, indent=2))
