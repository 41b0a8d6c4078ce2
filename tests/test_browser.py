"""`/docs` and `/redoc` in a real browser: they render the operations with every request
answered by the service itself (a school's or an operator's network may have no internet).

Chromium is Debian's (`/usr/bin/chromium`, which `.ci/run` installs), driven by Playwright for
Python; Playwright's own browser download is never used. Without Chromium the test is
skipped on a laptop and fails under `CI=true`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.procs import Service, fresh_database, running

CHROMIUM = os.environ.get("ESIS_SYNC_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LOCAL_SCHEMES = {"data", "blob", "about"}


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"{reason} (CI=true: the browser test must run; `.ci/run` installs it)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        _unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (make install)")
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    directory = tmp_path_factory.mktemp("browser")
    with fresh_database("sqlite", directory) as url, running(url, directory / "logs") as served:
        yield served


def _open(browser: Any, url: str, ready: str) -> tuple[Any, list[str], list[str]]:
    """The page once `ready` (a selector) is visible; every request it made, and failures."""
    requests: list[str] = []
    failed: list[str] = []
    page = browser.new_page()
    page.on("request", lambda r: requests.append(r.url))
    page.on("requestfailed", lambda r: failed.append(f"{r.url}: {r.failure}"))
    page.goto(url, wait_until="networkidle", timeout=120_000)
    page.wait_for_selector(ready, state="visible", timeout=120_000)
    page.wait_for_load_state("networkidle", timeout=120_000)
    return page, requests, failed


def _left_the_host(requests: list[str]) -> list[str]:
    return [
        u
        for u in requests
        if urlsplit(u).scheme not in LOCAL_SCHEMES and urlsplit(u).hostname != "127.0.0.1"
    ]


def test_swagger_ui_renders_the_operations_from_the_service_alone(
    browser: Any, service: Service
) -> None:
    page, requests, failed = _open(browser, f"{service.base_url}/docs", ".opblock")
    try:
        operations = page.locator(".opblock").count()
        assert operations >= 60, operations
        assert page.get_by_text("/api/v1/schools/{school}/esis/snapshots").first.is_visible()
        feed = page.locator(".opblock-summary-description", has_text="Read the change feed")
        assert feed.count() >= 1
        assert any(u.endswith("/openapi.json") for u in requests), requests
        assert any("/docs-assets/swagger-ui-bundle.js" in u for u in requests), requests
        assert _left_the_host(requests) == []
        assert failed == []
    finally:
        page.close()


def test_redoc_renders_the_operations_from_the_service_alone(
    browser: Any, service: Service
) -> None:
    page, requests, failed = _open(
        browser, f"{service.base_url}/redoc", 'h2:has-text("Read the change feed")'
    )
    try:
        assert page.locator("h2", has_text="Push a full ESIS snapshot").count() >= 1
        assert any("/docs-assets/redoc.standalone.js" in u for u in requests), requests
        # The sidebar's logo, which ReDoc would fetch from Redocly's CDN, is ours.
        assert f"{service.base_url}/docs-assets/favicon.png" in requests, requests
        assert _left_the_host(requests) == []
        assert failed == []
    finally:
        page.close()
