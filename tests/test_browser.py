"""`/docs` and `/redoc` in a real browser: they render the operations with every request
answered by the service itself (a school's or an operator's network may have no internet).

The browser is conftest's `browser` fixture: Debian's Chromium (`/usr/bin/chromium`, which
`.ci/run` installs) driven by Playwright for Python; Playwright's own browser download is never
used. Without Chromium the tests are skipped with the reason, and fail under `CI=true`.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page

from tests.conftest import CHROMIUM, unavailable
from tests.procs import Service, fresh_database, running

LOCAL_SCHEMES = {"data", "blob", "about"}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    directory = tmp_path_factory.mktemp("browser")
    with fresh_database("sqlite", directory) as url, running(url, directory / "logs") as served:
        yield served


def _open(browser: Browser, url: str, ready: str) -> tuple[Page, list[str], list[str]]:
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
    browser: Browser, service: Service
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
    browser: Browser, service: Service
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


@pytest.mark.parametrize(
    ("ci", "outcome"),
    [("true", pytest.fail.Exception), ("", pytest.skip.Exception), ("1", pytest.skip.Exception)],
)
def test_a_missing_browser_fails_under_ci_true_and_is_skipped_elsewhere(
    monkeypatch: pytest.MonkeyPatch, ci: str, outcome: type[BaseException]
) -> None:
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="/usr/bin/chromium is missing"):
        unavailable(f"{CHROMIUM} is missing")
