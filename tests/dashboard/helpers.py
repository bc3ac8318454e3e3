"""Driving the dashboard over plain HTTP, as a browser's forms would: read the CSRF token
from the page, post the form, follow the redirect."""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from parley.storage.db import run_migrations
from tests.conftest import DATABASE_URL, Server, make_settings

PASSWORD = "a long enough passphrase"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_API_KEY_SHOWN = re.compile(r'id="api-key-value"[^>]* value="([^"]+)"')
_CLIENT_KEY = re.compile(r'id="client-key-value"[^>]* value="([^"]+)"')


def new_email(label: str = "op") -> str:
    return f"{label}-{secrets.token_hex(4)}@example.com"


def new_address() -> str:
    """A client address in the documentation range, for X-Forwarded-For: random, so
    that counts kept in Redis by earlier runs do not meet this one."""
    return f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}"


@contextmanager
def dashboard_server(
    request: pytest.FixtureRequest, tmp: Path, database_url: str | None = None, **overrides: Any
) -> Iterator[Server]:
    """A Parley node with dashboard settings of its own. It shares the run's database
    (PostgreSQL: the one the session fixture migrated) unless ``database_url`` names
    another, already migrated one; on SQLite it gets a fresh file."""
    if database_url is None and DATABASE_URL:
        request.getfixturevalue("settings")  # the shared database, reset and migrated
    settings = make_settings(tmp, **overrides)
    if database_url is not None:
        settings.database_url = database_url
    if settings.is_sqlite:
        # On a thread of its own: Playwright's sync API keeps an event loop running in
        # this one, and the migrations start one of their own.
        with ThreadPoolExecutor(1) as worker:
            worker.submit(run_migrations, settings.effective_database_url).result()
    node = Server(settings).start()
    try:
        yield node
    finally:
        node.stop()


def csrf_of(page: httpx.Response) -> str:
    found = _CSRF.search(page.text)
    assert found, f"no CSRF token on {page.url}"
    return found.group(1)


def post_form(
    client: httpx.Client, path: str, fields: dict[str, str], *, page: str | None = None
) -> httpx.Response:
    """Open ``page`` (default: ``path``) for its token, then post the form to ``path``."""
    token = csrf_of(client.get(page or path))
    return client.post(path, data={"csrf": token, **fields})


def sign_up(client: httpx.Client, email: str, password: str = PASSWORD) -> httpx.Response:
    response = post_form(
        client,
        "/dashboard/signup",
        {"email": email, "password": password, "confirm": password},
    )
    assert response.status_code == 303, response.text
    return response


def log_in(
    client: httpx.Client, email: str, password: str = PASSWORD, *, page: str | None = None
) -> httpx.Response:
    """Post the sign-in form (its token from ``page``: a signed-in browser is sent on
    from the sign-in page, so it takes a token from a page it can see)."""
    return post_form(client, "/dashboard/login", {"email": email, "password": password}, page=page)


def create_app(
    client: httpx.Client, name: str = "Demo", environment: str = "production", domain: str = ""
) -> tuple[str, str]:
    """Create an app through the dashboard: (app id, the API Key shown once)."""
    response = post_form(
        client,
        "/dashboard/apps/new",
        {"name": name, "environment": environment, "domain": domain},
    )
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    app_id = location.split("/")[3]
    settings = client.get(location)
    shown = _API_KEY_SHOWN.search(settings.text)
    assert shown, "the new API Key is not on the settings page"
    return app_id, html.unescape(shown.group(1))


def client_key_on(page: httpx.Response) -> str | None:
    found = _CLIENT_KEY.search(page.text)
    return html.unescape(found.group(1)) if found else None


def session_cookie(response: httpx.Response) -> str | None:
    """The value of the session cookie a response sets (None: it sets none)."""
    for header in response.headers.get_list("set-cookie"):
        name, _, rest = header.partition("=")
        if name == "parley_session":
            return rest.split(";")[0]
    return None


def cookie_attributes(response: httpx.Response, name: str) -> dict[str, str]:
    for header in response.headers.get_list("set-cookie"):
        if header.startswith(name + "="):
            attributes = {}
            for part in header.split(";")[1:]:
                key, _, value = part.strip().partition("=")
                attributes[key.lower()] = value
            return attributes
    raise AssertionError(f"no {name} cookie set")


def signed_in(client: httpx.Client) -> bool:
    response = client.get("/dashboard/apps")
    if response.status_code == 303:
        assert response.headers["location"] == "/dashboard/login"
        return False
    assert response.status_code == 200, response.text
    return True
