"""The public IMKIT Postman collection, run by npm ``newman`` against a real Parley server.

Every request must answer 2xx with ``RC: 0``, except those of :data:`NOT_YET_SUPPORTED`,
whose feature Parley does not have: they must still find no route (404 ``NOT_FOUND``), so
that the list is kept true when a feature arrives. The collection is run in parts with a
fresh seed before each (see :mod:`tests.compat.runner`).
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.compat.runner import (
    NewmanError,
    Run,
    install_newman,
    keep_expiry_dates_ahead,
    load_collection,
    parts,
    requests_of,
    run_collection,
)
from tests.conftest import Server, need_service

# Requests of the collection whose feature is not built yet (no route in
# src/parley/api/routes), by request name.
NOT_YET_SUPPORTED = frozenset(
    {
        # Room bans and personal blocks: /blockStatus/room/..., /blockStatus/my/...
        "Ban a Member",
        "List Banned Members",
        "Unban a Member",
        "Block a User",
        "List Blocked Users",
        "Unblock a User",
        # An admin's push mute of a member: /admin/clients/{id}/mute/{room}
        "Mute a Member",
        "Unmute a Member",
        # Application config, sensitive words included: /config, /config/{key}
        "Get Sensitive Words",
        "Update Sensitive Words",
        "Delete Sensitive Words",
        "Get Config",
        "Update Config",
        "Delete Config",
        # The statistics report: /admin/stats
        "Get Statistics Report",
        # Push to clients: /push/push2clients
        "Push to Clients",
    }
)


@pytest.fixture(scope="module")
def collection_run(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The whole collection, run once against a new application of the test server."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        need_service("Node.js and npm (for newman)")
    assert npm is not None
    try:
        install_newman(npm)
    except NewmanError as exc:
        need_service(str(exc))
    keys = server.new_app("postman-collection")
    workdir: Path = tmp_path_factory.mktemp("compat")
    return run_collection(server.url, keys.api_key, keys.client_key, workdir)


def test_every_request_ran_once_in_order(collection_run: Run) -> None:
    ran = [outcome.request.name for outcome in collection_run.outcomes]
    assert ran == [request.name for request in requests_of(load_collection())]
    assert collection_run.stats["requests total"] == len(ran)


def test_every_supported_request_succeeds(collection_run: Run) -> None:
    failed = [
        outcome.describe()
        for outcome in collection_run.outcomes
        if outcome.request.name not in NOT_YET_SUPPORTED and not outcome.succeeded
    ]
    assert not failed, "requests that did not answer 2xx with RC 0:\n" + "\n".join(failed)


def test_not_yet_supported_requests_still_find_no_route(collection_run: Run) -> None:
    outcomes = {o.request.name: o for o in collection_run.outcomes}
    assert set(outcomes) >= NOT_YET_SUPPORTED, "NOT_YET_SUPPORTED names unknown requests"
    changed = []
    for name in sorted(NOT_YET_SUPPORTED):
        outcome = outcomes[name]
        body = outcome.json if isinstance(outcome.json, dict) else {}
        if outcome.succeeded:
            changed.append(f"succeeds now, take it off NOT_YET_SUPPORTED: {outcome.describe()}")
        elif outcome.status != 404 or body.get("error") != "NOT_FOUND":
            changed.append(f"has a route now, make it succeed: {outcome.describe()}")
    assert not changed, "\n".join(changed)


def test_the_run_is_cut_after_each_request_that_destroys_what_later_ones_use() -> None:
    cut = [[r.name for r in part] for part in parts(requests_of(load_collection()))]
    assert [part[-1] for part in cut[:-1]] == [
        "Update Token",
        "Delete Room",
        "Delete Message",
        "Recall Message",
    ]
    assert cut[1][0] == "Revoke Token"
    assert cut[4][:3] == ["Search Messages", "Pin Message", "Unpin Message"]


def test_token_expiry_dates_that_passed_move_forward_by_whole_years() -> None:
    collection = load_collection()

    def expiries(c: dict[str, object]) -> list[str]:
        return [
            line.split('"')[3]
            for r in _bodies(c)
            for line in r.splitlines()
            if '"expirationDate"' in line
        ]

    assert expiries(collection) == ["2027-12-31T23:59:59.000Z", "2027-01-01T00:00:00.000Z"]
    before = keep_expiry_dates_ahead(collection, datetime(2026, 11, 29, tzinfo=UTC))
    assert expiries(before) == expiries(collection)
    after = keep_expiry_dates_ahead(collection, datetime(2027, 6, 1, tzinfo=UTC))
    assert expiries(after) == ["2027-12-31T23:59:59.000Z", "2028-01-01T00:00:00.000Z"]
    assert expiries(collection)[1].startswith("2027")  # the original is left alone


def _bodies(collection: dict[str, object]) -> list[str]:
    def walk(items: object) -> list[str]:
        found: list[str] = []
        for item in items if isinstance(items, list) else []:
            if "item" in item:
                found += walk(item["item"])
            elif isinstance(item["request"].get("body"), dict):
                found.append(item["request"]["body"].get("raw", ""))
        return found

    return walk(collection["item"])
