"""API Key rate limit: N requests per fixed UTC minute per API Key (default 1000), then
429 RATE_LIMIT_EXCEEDED with ``retryAfter`` and a ``Retry-After`` header."""

from __future__ import annotations

import math
import time

import httpx

from tests.conftest import AppKeys, Server, assert_error, issue_token, start_of_a_fresh_window


def minute_of(t: float) -> int:
    return int(t // 60)


def assert_rate_limited(response: httpx.Response) -> int:
    """429 in the contract's shape; returns the seconds to wait, checked against the clock."""
    remaining = 60 - time.time() % 60
    body = assert_error(response, 429, "RATE_LIMIT_EXCEEDED")
    retry_after = body["retryAfter"]
    assert isinstance(retry_after, int) and 1 <= retry_after <= 60, body
    assert response.headers["Retry-After"] == str(retry_after)
    # Until the end of the current minute: the window is fixed, not sliding.
    assert abs(retry_after - math.ceil(remaining)) <= 1, (retry_after, remaining)
    return retry_after


def test_the_1001st_request_in_a_minute_is_refused_with_the_default_limit(
    server: Server, app_keys: AppKeys, admin: httpx.Client
) -> None:
    limit = server.settings.api_key_rate_limit
    assert limit == 1000
    # A thousand requests take seconds on a busy machine: leave them room in the minute.
    start_of_a_fresh_window(margin=25)
    started = time.time()
    statuses = [admin.get("/admin/clients").status_code for _ in range(limit)]
    over = admin.get("/admin/clients")
    ended = time.time()
    assert minute_of(started) == minute_of(ended), "took too long: the run crossed a minute"
    assert statuses.count(200) == limit, {s: statuses.count(s) for s in set(statuses)}
    assert_rate_limited(over)
    assert_rate_limited(admin.get("/admin/clients"))  # and it stays refused


def test_another_api_key_is_not_affected(
    server: Server, app_keys: AppKeys, admin: httpx.Client
) -> None:
    start_of_a_fresh_window()
    server.call(lambda s: s.apps.update(app_keys.id, rate_limit_per_minute=3))
    assert [admin.get("/admin/clients").status_code for _ in range(3)] == [200, 200, 200]
    assert_rate_limited(admin.get("/admin/clients"))

    other = server.new_app("other")
    server.call(lambda s: s.apps.update(other.id, rate_limit_per_minute=3))
    with server.client(**{"IM-API-KEY": other.api_key}) as c:
        assert [c.get("/admin/clients").status_code for _ in range(3)] == [200, 200, 200]
        assert_rate_limited(c.get("/admin/clients"))


def test_client_key_requests_are_not_counted_against_the_api_key(
    server: Server, app_keys: AppKeys, admin: httpx.Client
) -> None:
    start_of_a_fresh_window()
    token = issue_token(admin, "alice")  # one API Key request
    server.call(lambda s: s.apps.update(app_keys.id, rate_limit_per_minute=4))
    headers = {"IM-CLIENT-KEY": app_keys.client_key, "IM-Authorization": token}
    with server.client(**headers) as user:
        assert [user.get("/me").status_code for _ in range(10)] == [200] * 10
        # A Client Key on an admin route is refused, and not counted either.
        assert_error(user.get("/admin/clients"), 403, "INSUFFICIENT_PERMISSIONS")
    assert [admin.get("/admin/clients").status_code for _ in range(3)] == [200, 200, 200]
    assert_rate_limited(admin.get("/admin/clients"))
