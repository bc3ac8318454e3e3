"""Identifiers in the shapes IMKIT clients expect."""

from __future__ import annotations

import hashlib
import os
import time


def object_id() -> str:
    """A 24-hex id like MongoDB's ObjectId: 4 bytes of seconds, then 8 random bytes, so
    ids sort roughly by creation time."""
    return int(time.time()).to_bytes(4, "big").hex() + os.urandom(8).hex()


def direct_room_id(user_a: str, user_b: str) -> str:
    """The id of the direct room of two users, as the SDKs compute it: md5 of the two ids
    sorted and joined by an underscore, lower-cased."""
    return hashlib.md5("_".join(sorted((user_a, user_b))).lower().encode()).hexdigest()  # noqa: S324 - an id, not a secret
