"""Forged Client Keys and user tokens, over real HTTP to ``/me``.

Every forgery is built here from the standard library (base64, hmac, json), starting from
genuine credentials the server issued. The contract's answers:

- a bad Client Key (with a valid user token) → 403 ``INVALID_CLIENT_KEY``;
- a bad user token (with a valid Client Key) → 401 ``INVALID_TOKEN``;
- a genuine Client Key of another app with this app's token → 401 ``INVALID_TOKEN``
  (the key is fine, the token is not one of that app's);
- never a 5xx, nothing written by a forged ``POST /me``, and the genuine key and token
  still work afterwards.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.conftest import AppKeys, Server, assert_error, issue_token

# -- JWT pieces, by hand ---------------------------------------------------------------

GENUINE_HEADER = {"typ": "JWT", "alg": "HS256"}
ATTACKER_SECRET = b"attacker-chosen-secret"
# Looks like an RSA public key: the classic RS256→HS256 confusion signs with it as an
# HMAC secret, hoping the server verifies "with its public key" whatever the alg says.
PUBLIC_KEY_PEM = (
    b"-----BEGIN PUBLIC KEY-----\n"
    b"MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1LfVLPHCozMxH2Mo\n"
    b"4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u\n"
    b"-----END PUBLIC KEY-----\n"
)
_URLSAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def segment(value: Any) -> str:
    """A JSON value as a JWT segment, compact like the server's own."""
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def parts(token: str) -> tuple[str, str, str]:
    header, payload, signature = token.split(".")
    return header, payload, signature


def payload_of(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = json.loads(unb64url(parts(token)[1]))
    return claims


def hs256(secret: bytes, signing_input: str) -> str:
    return b64url(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())


def with_header(token: str, header: dict[str, Any] | str, *, secret: bytes | None = None) -> str:
    """``token`` under another header (a dict, or raw JSON text): its original signature
    kept, or a new HS256 one made with ``secret``."""
    head = b64url(header.encode()) if isinstance(header, str) else segment(header)
    _, payload, signature = parts(token)
    if secret is not None:
        signature = hs256(secret, f"{head}.{payload}")
    return f"{head}.{payload}.{signature}"


def with_claims(token: str, *, secret: bytes | None = None, **changes: Any) -> str:
    """``token`` with some payload claims changed; its original signature kept, or a new
    HS256 one made with ``secret``."""
    header, _, signature = parts(token)
    payload = segment({**payload_of(token), **changes})
    if secret is not None:
        signature = hs256(secret, f"{header}.{payload}")
    return f"{header}.{payload}.{signature}"


def with_payload_segment(token: str, payload: str) -> str:
    header, _, signature = parts(token)
    return f"{header}.{payload}.{signature}"


def with_signature(token: str, signature: str) -> str:
    header, payload, _ = parts(token)
    return f"{header}.{payload}.{signature}"


def flip_char(text: str, index: int) -> str:
    """``text`` with one base64url character replaced by a different one."""
    old = _URLSAFE.index(text[index])
    return text[:index] + _URLSAFE[(old + 1) % 64] + text[index + 1 :]


def flip_ignored_bits(signature: str) -> str:
    """The signature with its last character changed only in the bits base64 drops: 32
    bytes take 43 characters, whose last one carries 4 data bits and 2 filler bits. A
    verifier that compares decoded bytes would accept this spelling."""
    assert len(signature) == 43
    last = _URLSAFE.index(signature[-1])
    respelled = signature[:-1] + _URLSAFE[last ^ 1]
    assert respelled != signature and unb64url(respelled) == unb64url(signature)
    return respelled


def standard_alphabet(token: str) -> str:
    """The same bytes spelled in standard base64 (``+`` and ``/``) instead of base64url."""
    return token.replace("-", "+").replace("_", "/")


def non_ascii(text: str, index: int) -> bytes:
    """``text`` with an ``é`` inserted, as raw UTF-8 header bytes (the server reads header
    bytes as Latin-1, so it sees two non-ASCII characters)."""
    return (text[:index] + "é" + text[index:]).encode()


def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# -- the scene every attack starts from ----------------------------------------------------


@dataclass
class Scene:
    server: Server
    admin: httpx.Client  # app A's API Key
    app: AppKeys  # app A, whose /me is attacked
    token: str  # alice's server-issued token in app A
    other: AppKeys  # app B, another tenant of the same server
    other_token: str  # carol's server-issued token in app B


@pytest.fixture
def scene(server: Server, app_keys: AppKeys, admin: httpx.Client, user_token: str) -> Scene:
    other = server.new_app("other")
    with server.client(**{"IM-API-KEY": other.api_key}) as other_admin:
        other_token = issue_token(other_admin, "carol", nickname="Carol")
    return Scene(server, admin, app_keys, user_token, other, other_token)


Credential = str | bytes


def me(server: Server, client_key: Credential, token: Credential) -> httpx.Client:
    headers = {"IM-CLIENT-KEY": client_key, "IM-Authorization": token}
    return httpx.Client(base_url=server.url, headers=headers, timeout=10)


def assert_works(server: Server, client_key: str, token: str, user_id: str) -> None:
    """The genuine pair is accepted, so refusing its forged twin proves something."""
    with me(server, client_key, token) as c:
        response = c.get("/me")
    assert response.status_code == 200, response.text
    assert response.json()["result"]["_id"] == user_id


def new_tenant(server: Server, user_id: str = "dora") -> tuple[AppKeys, str]:
    keys = server.new_app("tenant")
    with server.client(**{"IM-API-KEY": keys.api_key}) as admin:
        token = issue_token(admin, user_id)
    assert_works(server, keys.client_key, token, user_id)
    return keys, token


# -- attacks -------------------------------------------------------------------------------

Build = Callable[[Scene], tuple[Credential, Credential]]
KEY = (403, "INVALID_CLIENT_KEY")
TOKEN = (401, "INVALID_TOKEN")


@dataclass(frozen=True)
class Attack:
    id: str
    build: Build  # → (Client Key, user token) to send
    expected: tuple[int, str]


def forged_key(forge: Callable[[Scene], Credential]) -> Build:
    """A forged Client Key of app A, sent with alice's genuine token."""
    return lambda s: (forge(s), s.token)


def forged_token(forge: Callable[[Scene], Credential]) -> Build:
    """A forged user token, sent with app A's genuine Client Key."""
    return lambda s: (s.app.client_key, forge(s))


def _alg(name: str) -> dict[str, str]:
    return {"typ": "JWT", "alg": name}


def _revoked_key(s: Scene) -> tuple[Credential, Credential]:
    keys, token = new_tenant(s.server)
    s.server.call(lambda svc: svc.keys.revoke_client_key(keys.id))
    return keys.client_key, token


def _deleted_app_key(s: Scene) -> tuple[Credential, Credential]:
    keys, token = new_tenant(s.server)
    s.server.call(lambda svc: svc.apps.delete(keys.id))
    return keys.client_key, token


def _respelled_key(s: Scene) -> tuple[Credential, Credential]:
    # A key holds ~150 base64url characters; a few fresh apps surely give one with '-' or '_'.
    for _ in range(20):
        keys, token = new_tenant(s.server)
        if standard_alphabet(keys.client_key) != keys.client_key:
            return standard_alphabet(keys.client_key), token
    raise AssertionError("no Client Key with '-' or '_' in 20 apps")


def _bob_token(s: Scene) -> str:
    token = issue_token(s.admin, "bob", nickname="Bob")
    assert_works(s.server, s.app.client_key, token, "bob")
    return token


def _respelled_token(s: Scene) -> Credential:
    for _ in range(20):
        token = _bob_token(s)
        if standard_alphabet(token) != token:
            return standard_alphabet(token)
    raise AssertionError("no issued token with '-' or '_' in 20 tries")


def _id_swapped_token(s: Scene) -> Credential:
    _bob_token(s)  # bob exists and has a token of his own; alice's now names him
    return with_claims(s.token, id="bob")


def _revoked_token(s: Scene) -> Credential:
    token = _bob_token(s)
    response = s.admin.request("DELETE", "/admin/clients/bob/token")
    assert response.status_code == 200, response.text
    return token


def _expired_token(s: Scene) -> Credential:
    token = "bob-assigned-" + secrets.token_hex(8)
    assert s.admin.post("/admin/clients", json={"_id": "bob"}).status_code == 200
    expires = time.time_ns() // 1_000_000 + 1200
    response = s.admin.put(
        "/admin/clients/bob/token", json={"token": token, "expirationDate": iso_ms(expires)}
    )
    assert response.status_code == 200, response.text
    assert_works(s.server, s.app.client_key, token, "bob")
    time.sleep(max(0.0, expires / 1000 - time.time()) + 0.1)  # ≤ 1.3 s, once
    return token


ATTACKS = [
    # alg "none" in its spellings, with an empty and with the original signature
    *[
        Attack(
            f"key-alg-{alg}-{sig}",
            forged_key(
                lambda s, alg=alg, sig=sig: (
                    with_header(s.app.client_key, _alg(alg))
                    if sig == "orig-sig"
                    else with_signature(with_header(s.app.client_key, _alg(alg)), "")
                )
            ),
            KEY,
        )
        for alg in ("none", "None", "NONE", "nOnE")
        for sig in ("empty-sig", "orig-sig")
    ],
    # Algorithm swaps in the header; the signature is the genuine HS256 one.
    Attack(
        "key-alg-RS256", forged_key(lambda s: with_header(s.app.client_key, _alg("RS256"))), KEY
    ),
    Attack(
        "key-alg-HS512", forged_key(lambda s: with_header(s.app.client_key, _alg("HS512"))), KEY
    ),
    Attack(
        "key-alg-ES256", forged_key(lambda s: with_header(s.app.client_key, _alg("ES256"))), KEY
    ),
    # Key confusion: HMAC signed with a public-key-looking string, under HS256 and RS256.
    Attack(
        "key-hmac-with-public-key",
        forged_key(lambda s: with_claims(s.app.client_key, secret=PUBLIC_KEY_PEM)),
        KEY,
    ),
    Attack(
        "key-rs256-header-hmac-with-public-key",
        forged_key(lambda s: with_header(s.app.client_key, _alg("RS256"), secret=PUBLIC_KEY_PEM)),
        KEY,
    ),
    # Signature damage
    Attack(
        "key-signature-stripped", forged_key(lambda s: with_signature(s.app.client_key, "")), KEY
    ),
    Attack("key-two-segments", forged_key(lambda s: s.app.client_key.rsplit(".", 1)[0]), KEY),
    Attack(
        "key-signature-truncated",
        forged_key(lambda s: with_signature(s.app.client_key, parts(s.app.client_key)[2][:-1])),
        KEY,
    ),
    Attack(
        "key-signature-first-char-flipped",
        forged_key(
            lambda s: with_signature(s.app.client_key, flip_char(parts(s.app.client_key)[2], 0))
        ),
        KEY,
    ),
    Attack(
        "key-signature-last-char-flipped",
        forged_key(
            lambda s: with_signature(s.app.client_key, flip_char(parts(s.app.client_key)[2], -1))
        ),
        KEY,
    ),
    Attack(
        "key-signature-last-char-same-bytes",
        forged_key(
            lambda s: with_signature(
                s.app.client_key, flip_ignored_bits(parts(s.app.client_key)[2])
            )
        ),
        KEY,
    ),
    Attack(
        "key-signed-with-attacker-secret",
        forged_key(lambda s: with_claims(s.app.client_key, secret=ATTACKER_SECRET)),
        KEY,
    ),
    # Tampered payload, original signature kept
    Attack(
        "key-clientId-of-another-app",
        forged_key(lambda s: with_claims(s.app.client_key, clientId=s.other.id)),
        KEY,
    ),
    Attack(
        "key-kid-of-another-app",
        forged_key(
            lambda s: with_claims(s.app.client_key, kid=payload_of(s.other.client_key)["kid"])
        ),
        KEY,
    ),
    Attack(
        "key-kid-unknown",
        forged_key(lambda s: with_claims(s.app.client_key, kid=secrets.token_hex(16))),
        KEY,
    ),
    Attack(
        "key-createAt-changed",
        forged_key(
            lambda s: with_claims(
                s.app.client_key, createAt=payload_of(s.app.client_key)["createAt"] + 1
            )
        ),
        KEY,
    ),
    Attack(
        "key-clientId-missing",
        forged_key(
            lambda s: with_payload_segment(
                s.app.client_key,
                segment({k: v for k, v in payload_of(s.app.client_key).items() if k != "clientId"}),
            )
        ),
        KEY,
    ),
    Attack("key-kid-not-a-string", forged_key(lambda s: with_claims(s.app.client_key, kid=1)), KEY),
    Attack(
        "key-kid-too-long", forged_key(lambda s: with_claims(s.app.client_key, kid="a" * 65)), KEY
    ),
    Attack(
        "key-kid-with-nul-byte",  # PostgreSQL text cannot hold NUL: must not reach the driver
        forged_key(lambda s: with_claims(s.app.client_key, kid="\x00")),
        KEY,
    ),
    Attack(
        "key-kid-lone-surrogate",  # not encodable as UTF-8: must not reach the driver
        forged_key(
            lambda s: with_payload_segment(
                s.app.client_key,
                b64url(f'{{"clientId":"{s.app.id}","kid":"\\ud800"}}'.encode()),
            )
        ),
        KEY,
    ),
    # Keys the attacker points the verifier at: embedded JWK, remote JWKS, X.509 URL
    Attack(
        "key-jwk-header",
        forged_key(
            lambda s: with_header(
                s.app.client_key,
                {**GENUINE_HEADER, "jwk": {"kty": "oct", "k": b64url(ATTACKER_SECRET)}},
                secret=ATTACKER_SECRET,
            )
        ),
        KEY,
    ),
    Attack(
        "key-jku-header",
        forged_key(
            lambda s: with_header(
                s.app.client_key,
                {**GENUINE_HEADER, "jku": "http://127.0.0.1:9/jwks.json"},
                secret=ATTACKER_SECRET,
            )
        ),
        KEY,
    ),
    Attack(
        "key-x5u-header",
        forged_key(
            lambda s: with_header(
                s.app.client_key,
                {**GENUINE_HEADER, "x5u": "http://127.0.0.1:9/cert.pem"},
                secret=ATTACKER_SECRET,
            )
        ),
        KEY,
    ),
    # kid path traversal: /dev/null reads as an empty secret, so sign with one.
    Attack(
        "key-header-kid-path-traversal",
        forged_key(
            lambda s: with_header(
                s.app.client_key, {**GENUINE_HEADER, "kid": "../../../../dev/null"}, secret=b""
            )
        ),
        KEY,
    ),
    Attack(
        "key-payload-kid-path-traversal",
        forged_key(lambda s: with_claims(s.app.client_key, kid="../../../../dev/null", secret=b"")),
        KEY,
    ),
    Attack(
        "key-header-kid-sql-injection",
        forged_key(
            lambda s: with_header(
                s.app.client_key, {**GENUINE_HEADER, "kid": "' OR 1=1 --"}, secret=b""
            )
        ),
        KEY,
    ),
    Attack(
        "key-payload-kid-sql-injection",
        forged_key(lambda s: with_claims(s.app.client_key, kid="' OR 1=1 --")),
        KEY,
    ),
    Attack(
        "key-unknown-crit-header",
        forged_key(
            lambda s: with_header(
                s.app.client_key,
                {**GENUINE_HEADER, "crit": ["x-unknown"], "x-unknown": True},
                secret=ATTACKER_SECRET,
            )
        ),
        KEY,
    ),
    # The same header in other bytes: its signature no longer covers what is sent.
    Attack(
        "key-header-whitespace",
        forged_key(lambda s: with_header(s.app.client_key, '{"typ": "JWT", "alg": "HS256"}')),
        KEY,
    ),
    Attack(
        "key-header-keys-reordered",
        forged_key(lambda s: with_header(s.app.client_key, '{"alg":"HS256","typ":"JWT"}')),
        KEY,
    ),
    # Genuine keys in the wrong place
    Attack(
        "key-of-another-app-retargeted",
        forged_key(lambda s: with_claims(s.other.client_key, clientId=s.app.id)),
        KEY,
    ),
    Attack("key-revoked", _revoked_key, KEY),
    Attack("key-of-deleted-app", _deleted_app_key, KEY),
    Attack("user-token-as-client-key", forged_key(lambda s: s.token), KEY),
    Attack(
        "key-of-another-app-with-this-apps-token", lambda s: (s.other.client_key, s.token), TOKEN
    ),
    # Malformed encodings and shapes
    Attack(
        "key-signature-padded",
        forged_key(lambda s: s.app.client_key + "="),  # 43 chars + '=' is valid padding
        KEY,
    ),
    Attack(
        "key-payload-padded",
        forged_key(
            lambda s: with_payload_segment(s.app.client_key, parts(s.app.client_key)[1] + "==")
        ),
        KEY,
    ),
    Attack("key-standard-base64-alphabet", _respelled_key, KEY),
    Attack(
        "key-plus-and-slash-in-signature",
        forged_key(
            lambda s: with_signature(s.app.client_key, "+/" + parts(s.app.client_key)[2][2:])
        ),
        KEY,
    ),
    Attack("key-non-ascii-in-header", forged_key(lambda s: non_ascii(s.app.client_key, 5)), KEY),
    Attack(
        "key-non-ascii-in-payload",
        forged_key(lambda s: non_ascii(s.app.client_key, s.app.client_key.index(".") + 5)),
        KEY,
    ),
    Attack(
        "key-non-ascii-in-signature",
        forged_key(lambda s: non_ascii(s.app.client_key, len(s.app.client_key) - 3)),
        KEY,
    ),
    Attack(
        "key-oversized-header",
        forged_key(
            lambda s: with_header(
                s.app.client_key, {**GENUINE_HEADER, "x": "A" * 10_000}, secret=ATTACKER_SECRET
            )
        ),
        KEY,
    ),
    Attack("key-empty-segments", forged_key(lambda s: ".."), KEY),
    Attack("key-empty-header", forged_key(lambda s: "." + s.app.client_key.split(".", 1)[1]), KEY),
    Attack(
        "key-empty-payload", forged_key(lambda s: with_payload_segment(s.app.client_key, "")), KEY
    ),
    Attack(
        "key-four-segments",
        forged_key(lambda s: s.app.client_key + "." + parts(s.app.client_key)[2]),
        KEY,
    ),
    Attack(
        "key-payload-is-array",
        forged_key(
            lambda s: with_payload_segment(
                s.app.client_key, segment([payload_of(s.app.client_key)])
            )
        ),
        KEY,
    ),
    Attack(
        "key-payload-is-string",
        forged_key(lambda s: with_payload_segment(s.app.client_key, segment(s.app.id))),
        KEY,
    ),
    Attack(
        "key-payload-not-json",
        forged_key(lambda s: with_payload_segment(s.app.client_key, b64url(b"{clientId:"))),
        KEY,
    ),
    Attack(
        "key-payload-not-utf8",
        forged_key(lambda s: with_payload_segment(s.app.client_key, b64url(b'{"kid":"\xff"}'))),
        KEY,
    ),
    # ---- user tokens, with app A's genuine Client Key ----
    Attack(
        "token-alg-none-empty-sig",
        forged_token(lambda s: with_signature(with_header(s.token, _alg("none")), "")),
        TOKEN,
    ),
    Attack(
        "token-alg-None-orig-sig", forged_token(lambda s: with_header(s.token, _alg("None"))), TOKEN
    ),
    Attack("token-alg-RS256", forged_token(lambda s: with_header(s.token, _alg("RS256"))), TOKEN),
    Attack(
        "token-hmac-with-public-key",
        forged_token(lambda s: with_claims(s.token, secret=PUBLIC_KEY_PEM)),
        TOKEN,
    ),
    Attack("token-signature-stripped", forged_token(lambda s: with_signature(s.token, "")), TOKEN),
    Attack(
        "token-signature-truncated",
        forged_token(lambda s: with_signature(s.token, parts(s.token)[2][:-1])),
        TOKEN,
    ),
    Attack(
        "token-signature-last-char-same-bytes",
        forged_token(lambda s: with_signature(s.token, flip_ignored_bits(parts(s.token)[2]))),
        TOKEN,
    ),
    Attack("token-id-changed-to-another-user", forged_token(_id_swapped_token), TOKEN),
    Attack(
        "token-exp-extended", forged_token(lambda s: with_claims(s.token, exp=2**31 - 1)), TOKEN
    ),
    Attack(
        "token-jwk-header",
        forged_token(
            lambda s: with_header(
                s.token,
                {**GENUINE_HEADER, "jwk": {"kty": "oct", "k": b64url(ATTACKER_SECRET)}},
                secret=ATTACKER_SECRET,
            )
        ),
        TOKEN,
    ),
    Attack("token-of-another-app", forged_token(lambda s: s.other_token), TOKEN),
    Attack("client-key-as-user-token", forged_token(lambda s: s.app.client_key), TOKEN),
    Attack("token-expired", forged_token(_expired_token), TOKEN),
    Attack("token-issued-then-revoked", forged_token(_revoked_token), TOKEN),
    Attack("token-signature-padded", forged_token(lambda s: s.token + "="), TOKEN),
    Attack("token-standard-base64-alphabet", forged_token(_respelled_token), TOKEN),
    Attack("token-non-ascii", forged_token(lambda s: non_ascii(s.token, 5)), TOKEN),
    Attack(
        "token-oversized-header",
        forged_token(
            lambda s: with_header(s.token, {**GENUINE_HEADER, "x": "A" * 10_000}, secret=b"")
        ),
        TOKEN,
    ),
    Attack("token-empty-segments", forged_token(lambda s: ".."), TOKEN),
    Attack("token-four-segments", forged_token(lambda s: s.token + ".x"), TOKEN),
    Attack(
        "token-payload-is-array",
        forged_token(lambda s: with_payload_segment(s.token, segment([]))),
        TOKEN,
    ),
    Attack(
        "token-payload-is-string",
        forged_token(lambda s: with_payload_segment(s.token, segment("alice"))),
        TOKEN,
    ),
]


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.id for a in ATTACKS])
def test_forged_credential_is_refused(scene: Scene, attack: Attack) -> None:
    client_key, token = attack.build(scene)
    assert (client_key, token) != (scene.app.client_key, scene.token)
    status, code = attack.expected
    with me(scene.server, client_key, token) as forged:
        assert_error(forged.get("/me"), status, code)
        assert_error(forged.post("/me", json={"nickname": "Mallory"}), status, code)
    # Control: the genuine pair still works, and the forged POST changed nothing.
    with me(scene.server, scene.app.client_key, scene.token) as genuine:
        response = genuine.get("/me")
    assert response.status_code == 200, response.text
    assert response.json()["result"]["_id"] == "alice"
    assert response.json()["result"]["nickname"] == "Alice"


def test_there_are_enough_distinct_attacks() -> None:
    ids = [a.id for a in ATTACKS]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 30


def test_genuine_credentials_are_accepted(scene: Scene) -> None:
    # The baseline every forgery above is measured against.
    assert_works(scene.server, scene.app.client_key, scene.token, "alice")
    assert_works(scene.server, scene.other.client_key, scene.other_token, "carol")
    assert parts(scene.app.client_key)[0] == segment(GENUINE_HEADER)
    assert set(payload_of(scene.app.client_key)) >= {"clientId", "createAt", "kid"}
    assert payload_of(scene.token)["id"] == "alice"
