"""Pages in a real browser: Debian's Chromium driven by Playwright.

``browser`` is one headless Chromium per test module; ``page`` a fresh context (its own
cookies and storage) per test. ``shoot(page, name)`` writes a full-page screenshot to
``SCREENSHOTS`` (``test-screenshots/`` at the repository root, git-ignored) so a reviewer
can look at the pages the tests saw.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Server, need_service

CHROMIUM = os.environ.get("PARLEY_TEST_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-screenshots"


@pytest.fixture(scope="module")
def browser(server: Server) -> Iterator[Any]:
    # Playwright's sync API holds an event loop in this thread while it is open, and
    # asyncio cannot run beside it: the server (whose set-up runs asyncio) starts first,
    # and the browser closes with its module, before later tests run asyncio themselves.
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        need_service(f"Chromium ({CHROMIUM})")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    """A browser profile of its own: cookies, storage and clipboard permission."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    ctx.set_default_timeout(10_000)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(context: Any) -> Any:
    return context.new_page()


def shoot(page: Any, name: str) -> Path:
    """Save a screenshot of ``page`` as ``SCREENSHOTS/<name>.png``."""
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
