"""Schemathesis against a live node's ``/openapi.json``: every operation it describes gets
generated requests (valid and invalid), with real credentials, and every answer must pass
Schemathesis' default checks: no server error, only documented statuses, content types,
headers and body shapes, valid data accepted, invalid data refused, credentials enforced.

A fresh application with users, a room, messages, a file, a group and preferences
exists first, and the path parameters of valid requests are often swapped for its ids, so
that requests reach the handlers' rules rather than stopping at "not found".

The default run makes a few hundred requests (no coverage phase, 3 examples per
operation, fixed seed). The long run, on demand:

    PARLEY_FUZZ_EXAMPLES=120 .venv/bin/pytest -s -p no:cacheprovider \
        tests/fuzz/test_schemathesis.py

adds Schemathesis' coverage phase and up to N random examples per operation (120: about
13,000 cases, 24,000 requests, 17 minutes on two cores); ``-s`` shows the counts: cases
generated, requests the node received (checks' own probes included), and schema-valid
requests a service rule refused.
"""

from __future__ import annotations

import json
import tempfile
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from schemathesis import GenerationMode
from starlette.types import ASGIApp, Receive, Scope, Send

from parley.api.permissions import access_for
from parley.app import create_app
from parley.config import Settings
from parley.services.auth import Access
from tests.conftest import LogCapture, Server, issue_token, ok
from tests.fuzz.budget import fuzz_settings, is_full_run

USER = "fuzz-alice"
OTHER = "fuzz-bob"
ROOM = "fuzz-room"
BUCKET = "fuzz-bucket"


@dataclass
class FuzzedApp:
    """The application the requests act on, and the ids that exist in it."""

    server: Server
    api_key: str
    client_key: str
    token: str
    known: dict[str, list[str]] = field(default_factory=dict)
    received: int = 0  # HTTP requests the node received
    cases: int = 0  # generated cases
    # Schema-valid requests refused with 400 or 413 by a rule of the services.
    refused: Counter[str] = field(default_factory=Counter)

    def headers_for(self, method: str, path: str) -> dict[str, str]:
        access = access_for(method, path)
        if access is Access.ADMIN:
            return {"IM-API-KEY": self.api_key}
        if access is Access.USER:
            return {"IM-CLIENT-KEY": self.client_key, "IM-Authorization": self.token}
        if access is Access.CLIENT_KEY:
            return {"IM-CLIENT-KEY": self.client_key}
        return {}

    def renew_token(self) -> None:
        """Generated requests may log the user out or revoke its tokens: issue another."""
        with self.server.client(**{"IM-API-KEY": self.api_key}) as admin:
            self.token = issue_token(admin, USER)


def _populate(server: Server) -> FuzzedApp:
    keys = server.new_app("fuzz")
    with server.client(**{"IM-API-KEY": keys.api_key}) as admin:
        token = issue_token(admin, USER, nickname="Alice")
        issue_token(admin, OTHER, nickname="Bob")
        ok(admin.post("/rooms", json={"_id": ROOM, "name": "Fuzz", "members": [USER, OTHER]}))
        ok(
            admin.post(
                "/admin/groups", json={"_id": "fuzz-group", "nickname": "Team", "members": [USER]}
            )
        )
    fixture = FuzzedApp(server, keys.api_key, keys.client_key, token)
    headers = fixture.headers_for("GET", "/me")
    with server.client(**headers) as alice:
        messages = [
            ok(alice.post(f"/rooms/{ROOM}/message", json={"message": f"hi {n}"}))["_id"]
            for n in range(3)
        ]
        uploaded = ok(
            alice.post(
                f"/files/{BUCKET}",
                files={"file": ("a.txt", b"hello", "text/plain")},
                data={"extra": json.dumps({"roomID": ROOM})},
            )
        )
        ok(alice.post(f"/roomPrefs/{ROOM}", json={"tags": ["work"]}))
        ok(alice.post("/me/pref/tags", json={"dark": True}))
    fixture.known = {
        "room_id": [ROOM],
        "message_id": messages,
        "client_id": [USER, OTHER],
        "invitee": [OTHER],
        "bucket": [BUCKET],
        "file_id": [uploaded["_id"]],
        "group": ["work"],
        "key": ["tags"],
    }
    return fixture


@pytest.fixture(scope="module")
def fuzz_fixture(settings: Settings, log_capture: LogCapture) -> Iterator[FuzzedApp]:
    # A node of its own, on the run's database, without the API Key rate limit: thousands
    # of generated requests a minute must reach the handlers, not stop at 429.
    node = Server(settings.model_copy(update={"api_key_rate_limit": 10**9}))
    counter = RequestCounter()
    node.app.add_middleware(Counting, counter=counter)
    node.start()
    try:
        fixture = _populate(node)
        counter.fixture = fixture
        with node.client() as anonymous:
            served = anonymous.get("/openapi.json")
        assert served.json() == schema.raw_schema, "the fuzzed description is not the served one"
        yield fixture
    finally:
        node.stop()


# The description the app serves at /openapi.json (the test checks the live one is the
# same): loaded at import, since Schemathesis makes one test per operation at collection.
#
# Every default check runs, with these expectations of Parley's own:
# - a schema-valid request may get 400 or 413 (besides the 401/403/404/409/429 the check
#   allows): the services enforce rules that the description does not state (a member of
#   the room, a message of that room, a time within range, fields that go together, a
#   page no larger than the server serves) and answer them with 400 or 413
#   RESULT_TOO_LARGE in the contract's error shape. The count of such answers is printed,
#   so that a rule the description could state stays visible;
# - an invalid request may be refused with 413 (and never with a 5xx);
# - unknown query parameters are ignored, not invalid.
CONFIG = schemathesis.Config.from_dict(
    {
        # IMKIT clients add query parameters of their own (cache busters…).
        "generation": {"allow-extra-parameters": False},
        # The coverage phase (boundary values and every kind of invalid value, for each
        # parameter: thousands of cases) belongs to the long run only.
        "phases": {"coverage": {"enabled": is_full_run()}},
        "checks": {
            "negative_data_rejection": {
                "expected-statuses": [
                    *("400", "401", "403", "404", "405", "406", "409", "413", "415"),
                    *("422", "428", "429"),
                ]
            },
            "positive_data_acceptance": {
                "expected-statuses": [
                    *("2xx", "3xx", "400", "401", "403", "404", "409", "413", "429")
                ]
            },
        },
    }
)


def _description() -> dict[str, Any]:
    """What the app serves at /openapi.json, from an app that is never started (building
    one creates its data directory: a scratch one, not the working directory's)."""
    with tempfile.TemporaryDirectory() as scratch:
        app = create_app(Settings(secret_key="0" * 64, data_dir=Path(scratch)))
        return app.openapi()


schema = schemathesis.openapi.from_dict(_description(), config=CONFIG)


@pytest.fixture(scope="module")
def report(fuzz_fixture: FuzzedApp) -> Iterator[FuzzedApp]:
    """The counts, printed once every operation has run."""
    yield fuzz_fixture
    refused = fuzz_fixture.refused
    print(f"\nschemathesis: {fuzz_fixture.cases} generated cases")
    print(f"schemathesis: {fuzz_fixture.received} HTTP requests received by the node")
    print(f"schema-valid requests refused by a service rule: {sum(refused.values())}")
    for operation, count in refused.most_common():
        print(f"  {count:6d}  {operation}")


@schema.parametrize()
@fuzz_settings(short_examples=3)
def test_api_conforms_to_its_openapi(case: Any, report: FuzzedApp) -> None:
    path = case.operation.path
    report.cases += 1
    positive = case.meta is not None and case.meta.generation.mode == GenerationMode.POSITIVE
    if positive and case.path_parameters:
        _use_known_ids(case.path_parameters, report.known)
    headers = report.headers_for(case.method.upper(), path)
    response = case.call_and_validate(base_url=report.server.url, headers=headers)
    if positive and response.status_code in (400, 413):
        report.refused[f"{case.method.upper()} {path}"] += 1
    if response.status_code == 401 and headers.get("IM-Authorization"):
        report.renew_token()


def _use_known_ids(parameters: dict[str, Any], known: dict[str, list[str]]) -> None:
    """Replace about half of the generated ids with ids that exist, chosen by the
    generated value itself (so that Hypothesis replays a case exactly)."""
    for name, value in parameters.items():
        choice = zlib.crc32(str(value).encode()) % (2 * len(known.get(name, [])) or 1)
        if choice < len(known.get(name, [])):
            parameters[name] = known[name][choice]


class RequestCounter:
    fixture: FuzzedApp | None = None


class Counting:
    """Counts every HTTP request the node receives (the checks' probes included)."""

    def __init__(self, app: ASGIApp, counter: RequestCounter) -> None:
        self.app = app
        self.counter = counter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.counter.fixture is not None:
            self.counter.fixture.received += 1
        await self.app(scope, receive, send)
