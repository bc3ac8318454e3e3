"""The permission matrix, exhaustively: every route the app serves, with every kind of
credential, checked against the one table in parley.api.permissions."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi import APIRouter, FastAPI

from parley.api.deps import AuthorizedRoute
from parley.api.permissions import PERMISSIONS, access_for
from parley.app import check_permission_table, route_operations
from parley.services.auth import Access
from tests.conftest import AppKeys, Server, assert_error, issue_token

CREDENTIALS = ["none", "client_key", "client_key+token", "api_key"]


def operations(server: Server) -> list[tuple[str, str]]:
    return route_operations(server.app)


def test_every_route_has_an_entry(server: Server) -> None:
    served = operations(server)
    assert served, "no routes found"
    missing = [op for op in served if access_for(*op) is None]
    assert missing == []
    stale = sorted(set(PERMISSIONS) - set(served))
    assert stale == [], "entries for routes that no longer exist"


def test_a_route_without_an_entry_stops_the_app_from_starting() -> None:
    app = FastAPI()
    router = APIRouter(route_class=AuthorizedRoute)

    @router.get("/admin/secret-report")
    async def report() -> dict[str, str]:
        return {}

    app.router.routes.extend(router.routes)
    with pytest.raises(RuntimeError, match="missing from the permission table"):
        check_permission_table(app)


def test_an_unguarded_api_route_stops_the_app_from_starting() -> None:
    app = FastAPI()

    @app.get("/health")  # in the table, but a plain APIRoute that skips authorization
    async def health() -> dict[str, str]:
        return {}

    with pytest.raises(RuntimeError, match="skip authorization"):
        check_permission_table(app)


def _request(
    server: Server, keys: AppKeys, token: str, credential: str, method: str, path: str
) -> httpx.Response:
    headers: dict[str, str] = {}
    if credential.startswith("client_key"):
        headers["IM-CLIENT-KEY"] = keys.client_key
    if credential == "client_key+token":
        headers["IM-Authorization"] = token
    if credential == "api_key":
        headers["IM-API-KEY"] = keys.api_key
    url = re.sub(r"\{[^}]+\}", "alice", path)
    with server.client(**headers) as client:
        return client.request(method, url, json={} if method != "GET" else None)


@pytest.mark.parametrize("credential", CREDENTIALS)
def test_matrix(server: Server, credential: str) -> None:
    """One request per route with this credential; the answer must follow the table."""
    keys = server.new_app("matrix")
    with server.client(**{"IM-API-KEY": keys.api_key}) as admin:
        token = issue_token(admin, "alice")
    checked = 0
    for method, path in operations(server):
        access = access_for(method, path)
        response = _request(server, keys, token, credential, method, path)
        where = f"{credential} {method} {path}"
        if access is Access.PUBLIC or credential == "api_key":
            assert response.status_code not in (401, 403, 429), where
        elif credential == "none":
            code = "MISSING_API_KEY" if access is Access.ADMIN else "MISSING_CLIENT_KEY"
            assert_error(response, 401, code)
        elif access is Access.ADMIN:
            assert_error(response, 403, "INSUFFICIENT_PERMISSIONS")
        elif access is Access.USER and credential == "client_key":
            assert_error(response, 401, "INVALID_TOKEN")
        else:  # a user route with Client Key + token, or a Client-Key route
            assert response.status_code not in (401, 403, 429), where
        assert response.status_code < 500, where
        checked += 1
        if "logout" in path:  # it ended the session: the next route needs a new token
            with server.client(**{"IM-API-KEY": keys.api_key}) as admin:
                token = issue_token(admin, "alice")
    assert checked == len(operations(server))
