"""The console in a real browser (Debian's Chromium through Playwright) against the real
server (`esis-sync serve` on loopback), on SQLite and PostgreSQL.

Every page visited is saved as a screenshot in $ESIS_SYNC_CONSOLE_SCREENSHOTS (default: a
directory under pytest's tmp dir). The browser is conftest's `browser` fixture: without
Debian's Chromium the test is skipped with the reason, and fails under CI=true.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests import procs
from tests.console_helpers import bearer, failing_school, hold, seed


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("ESIS_SYNC_CONSOLE_SCREENSHOTS")
    path = Path(configured) if configured else tmp_path_factory.mktemp("console-screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


class Shooter:
    def __init__(self, page: Page, directory: Path, prefix: str) -> None:
        self.page, self.directory, self.prefix, self.n = page, directory, prefix, 0

    def __call__(self, name: str) -> None:
        self.n += 1
        self.page.screenshot(
            path=str(self.directory / f"{self.prefix}-{self.n:02d}-{name}.png"), full_page=True
        )


def _sign_in_by_keyboard(page: Page, base: str, secret: str) -> None:
    page.goto(f"{base}/console/login")
    expect(page.get_by_label("API-sleutel")).to_be_focused()
    page.keyboard.type(secret)
    page.keyboard.press("Enter")
    page.wait_for_load_state()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_r5_r6_r7_a_school_admin_and_an_operator_use_the_console(
    backend: str, browser: Browser, shots: Path, tmp_path: Path
) -> None:
    with (
        procs.fresh_database(backend, tmp_path) as url,
        procs.running(url, tmp_path / "logs", env={"ESIS_SYNC_PULL_ATTEMPTS": "1"}) as service,
        procs.client(service.base_url) as http,
    ):
        operator = procs.operator_key(url)
        school = seed(http, operator)
        failing = failing_school(http, operator, "78GH")
        context = browser.new_context(viewport={"width": 1100, "height": 800}, locale="nl-NL")
        page = context.new_page()
        shot = Shooter(page, shots, backend)
        base = service.base_url
        home = f"{base}/console/schools/{school.key}"

        # Sign in with the admin key, by keyboard only.
        page.goto(f"{base}/console/login")
        shot("sign-in")
        _sign_in_by_keyboard(page, base, school.admin)
        expect(page.get_by_role("heading", name="Overzicht")).to_be_visible()
        assert page.url == home
        shot("overview")
        cookies = {c["name"]: c for c in context.cookies()}
        assert cookies["console_session"]["httpOnly"] is True
        assert cookies["console_session"]["sameSite"] == "Strict"
        assert school.admin not in str(context.cookies())

        # Drift: ours beside ESIS's; accept one, then all that remain.
        page.get_by_role("link", name="Afwijkingen").click()
        expect(page.get_by_text("nieuw.ouder1@example.nl")).to_be_visible()
        expect(page.get_by_text("ouder1@example.nl", exact=True)).to_be_visible()
        shot("drift")
        page.get_by_label("email van A Ouder1 kiezen").check()
        page.get_by_role("button", name="Gekozen ESIS-waarden overnemen").click()
        expect(page.get_by_role("status")).to_have_text("1 ESIS-waarden overgenomen.")
        expect(page.get_by_text("nieuw.ouder1@example.nl")).to_have_count(0)
        guardians = http.get(
            f"/api/v1/schools/{school.key}/guardians?q=Ouder1", headers=bearer(school.admin)
        ).json()["items"]
        assert [g["email"] for g in guardians if g["last_name"] == "Ouder1"] == [
            "nieuw.ouder1@example.nl"
        ]
        page.get_by_role("button", name="Alle 2 (met dit filter) overnemen").click()
        expect(page.get_by_role("status")).to_have_text("2 ESIS-waarden overgenomen.")
        expect(page.get_by_text("Geen open afwijkingen.")).to_be_visible()
        shot("drift-accepted")

        # Deleted locally: restore the student.
        page.get_by_role("link", name="Verwijderd").click()
        shot("deleted")
        page.get_by_role("button", name="Kind10 Leerling10 terugzetten").click()
        expect(page.get_by_role("status")).to_have_text("Teruggezet.")
        student = http.get(
            f"/api/v1/schools/{school.key}/students/{school.deleted_student}",
            headers=bearer(school.admin),
        ).json()
        assert student["provenance"]["deleted_at"] is None

        for link, name in (("Niet meer in ESIS", "missing"), ("Nakijken", "review")):
            page.get_by_role("link", name=link, exact=True).click()
            shot(name)
        page.get_by_role("link", name="Activeren", exact=True).click()
        shot("activation")

        # Year transition: the preview in numbers; reject the held one, confirm the next.
        page.get_by_role("link", name="Jaarovergang").click()
        expect(page.get_by_role("heading", name="Aangehouden jaarovergangen (1)")).to_be_visible()
        shot("year-transition")
        page.get_by_role("button", name="Afwijzen").click()
        expect(page.get_by_role("status")).to_have_text("De jaarovergang is afgewezen.")
        hold(http, school.key, school.esis, school.snapshot)
        page.reload()
        page.get_by_role("button", name="Bevestigen en uitvoeren").click()
        expect(page.get_by_role("status")).to_have_text(
            "De jaarovergang is bevestigd en uitgevoerd."
        )
        shot("year-transition-confirmed")
        live = http.get(
            f"/api/v1/schools/{school.key}/students?limit=100", headers=bearer(school.admin)
        ).json()["items"]
        assert len(live) == 4

        # A sync run and its CSV report.
        page.get_by_role("link", name="Synchronisaties", exact=True).click()
        shot("runs")
        page.get_by_role("row").filter(has_text="activering").get_by_role("link").click()
        expect(page.get_by_role("heading", name="Koppelrapport")).to_be_visible()
        shot("run")
        with page.expect_download() as download:
            page.get_by_role("link", name="Rapport downloaden (CSV)").click()
        report = Path(download.value.path()).read_text()
        rows = list(csv.reader(io.StringIO(report)))
        assert rows[0] == ["section", "entity", "name", "value"]
        assert ["count", "student", "added", "10"] in rows

        # English, from the switch on the page.
        page.get_by_role("link", name="English").click()
        expect(page.get_by_role("heading", name="Match report")).to_be_visible()
        shot("run-english")
        page.get_by_role("link", name="Nederlands").click()
        page.get_by_role("button", name="Afmelden").click()
        expect(page.get_by_role("heading", name="Aanmelden")).to_be_visible()

        # The operator: every school, the failing one stands out and filters alone.
        _sign_in_by_keyboard(page, base, operator)
        expect(page.get_by_role("heading", name="Scholen")).to_be_visible()
        row = page.get_by_role("row").filter(has_text=failing["key"])
        expect(row).to_contain_text("1 mislukt")
        expect(row).to_contain_text("binnenkort!")
        shot("operator")
        page.get_by_label("Toon").select_option("failing")
        page.get_by_role("button", name="Toepassen").click()
        expect(page.get_by_role("row")).to_have_count(2)  # the header and the failing school
        shot("operator-failing")
        page.get_by_role("link", name=failing["key"]).click()
        expect(page.get_by_role("heading", name="Overzicht")).to_be_visible()
        shot("operator-school")
        context.close()
        assert "Traceback" not in service.log_text(), service.log_tail()
