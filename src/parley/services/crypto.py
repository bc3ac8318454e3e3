"""Secret formats and the one JWT shape Parley signs.

- API Keys: ``prly_`` + 43 base62 characters (256 random bits) + 6 base62 characters of
  CRC-32 checksum. The prefix lets secret scanners spot a leaked key; the checksum lets
  us reject typos and mangled keys without touching the database (it is no defence: the
  algorithm is public).
- Signing secrets are never stored: each is HMAC-SHA256(master secret, purpose ‖ salt),
  with a random 32-byte salt per key in the database.
- JWTs: header exactly ``{"typ":"JWT","alg":"HS256"}``. Verification compares the header
  segment byte for byte with the one we issue, so ``alg``, ``kid``, ``jku``, ``jwk``,
  ``x5u`` and ``crit`` in a forged header are never read, let alone trusted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import zlib
from typing import Any

import orjson

API_KEY_PREFIX = "prly_"
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_HEX = frozenset("0123456789abcdef")
_API_KEY_BODY = 43
_API_KEY_CHECK = 6
API_KEY_LENGTH = len(API_KEY_PREFIX) + _API_KEY_BODY + _API_KEY_CHECK
MAX_JWT_LENGTH = 4096


def _base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        chars.append(_BASE62[digit])
    return "".join(reversed(chars))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), _API_KEY_CHECK)


def new_api_key() -> str:
    body = _base62(int.from_bytes(secrets.token_bytes(32)), _API_KEY_BODY)
    return API_KEY_PREFIX + body + _checksum(body)


def api_key_well_formed(key: str) -> bool:
    if len(key) != API_KEY_LENGTH or not key.isascii() or not key.startswith(API_KEY_PREFIX):
        return False
    body = key[len(API_KEY_PREFIX) : -_API_KEY_CHECK]
    if any(c not in _BASE62 for c in body):
        return False
    return hmac.compare_digest(key[-_API_KEY_CHECK:], _checksum(body))


def api_key_display(key: str) -> str:
    """What may be shown after creation: the prefix, four characters, and the last four."""
    return f"{key[: len(API_KEY_PREFIX) + 4]}…{key[-4:]}"


def digest(secret: str) -> str:
    """The stored form of a high-entropy secret (API Key, user token). A fast hash is right
    here: these secrets are random, not passwords, so there is nothing to brute-force."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_salt() -> str:
    return secrets.token_hex(32)


def new_id() -> str:
    return secrets.token_hex(16)


def is_id(value: object) -> bool:
    """Whether ``value`` has the shape of :func:`new_id` (checked before any lookup)."""
    return isinstance(value, str) and len(value) == 32 and all(c in _HEX for c in value)


def derive_secret(master: bytes, purpose: str, salt: str) -> bytes:
    return hmac.new(master, purpose.encode() + b"\0" + salt.encode(), hashlib.sha256).digest()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    standard = text.replace("-", "+").replace("_", "/")
    if not text or "+" in text or "/" in text or "=" in text:
        raise ValueError("not base64url")
    return base64.b64decode(standard + "=" * (-len(text) % 4), validate=True)


_HEADER = _b64url(orjson.dumps({"typ": "JWT", "alg": "HS256"}))


def sign_jwt(payload: dict[str, Any], secret: bytes) -> str:
    signing_input = _HEADER + "." + _b64url(orjson.dumps(payload))
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64url(signature)


def read_jwt_payload(token: str) -> dict[str, Any]:
    """The payload of a token in Parley's JWT shape, NOT yet verified: callers use it only
    to find the key that must then verify it with :func:`jwt_signature_valid`.

    Raises ValueError for anything that is not exactly our shape.
    """
    if len(token) > MAX_JWT_LENGTH or not token.isascii():
        raise ValueError("too long or not ASCII")
    parts = token.split(".")
    if len(parts) != 3 or not hmac.compare_digest(parts[0], _HEADER):
        raise ValueError("not a Parley JWT")
    try:
        payload = orjson.loads(_unb64url(parts[1]))
    except (binascii.Error, orjson.JSONDecodeError) as exc:
        raise ValueError("bad payload") from exc
    if not isinstance(payload, dict):
        raise ValueError("payload is not an object")
    return payload


def jwt_signature_valid(token: str, secret: bytes) -> bool:
    # Compared as text, not decoded bytes: base64 lets several strings decode to the same
    # bytes, and a token must have exactly one valid spelling.
    signing_input, _, signature = token.rpartition(".")
    expected = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return hmac.compare_digest(signature.encode(), _b64url(expected).encode())
