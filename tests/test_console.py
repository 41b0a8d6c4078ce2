"""The console through the ASGI app: sign-in, session cookie, CSRF, school scope, expiry,
read-only readers, languages. The browser tests are in test_console_browser.py."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.auth.service import hash_secret
from app.config import Settings
from app.console.i18n import LOCALE_DIR, Texts, compile_catalog, pick_language
from app.console.models import ConsoleSession
from app.console.operator import PAGE_SIZE
from app.coupling.pulls import PullOptions, run_due
from app.coupling.receive import PushLimits
from app.sync.models import DriftItem
from tests import factories
from tests.console_helpers import Seeded, bearer, csrf_of, make_school, seed
from tests.factories import auth, operator_key
from tests.merge_helpers import FakeEsisPulls
from tests.snapshots import school_snapshot

ROOT = Path(__file__).resolve().parent.parent
CONSOLE = ROOT / "app" / "console"
PAGES = [
    "",
    "/activation",
    "/drift",
    "/missing",
    "/deleted",
    "/review",
    "/year-transition",
    "/runs",
]


def sign_in(client: TestClient, secret: str) -> object:
    form = client.get("/console/login")
    assert form.status_code == 200
    return client.post(
        "/console/login",
        data={"key": secret, "csrf": csrf_of(form.text), "next": ""},
        follow_redirects=False,
    )


def drift_count(db: sessionmaker[Session]) -> int:
    with db() as session:
        return int(session.scalar(select(func.count()).select_from(DriftItem)) or 0)


@pytest.fixture
def seeded(client: TestClient, db: sessionmaker[Session]) -> Seeded:
    return seed(client, operator_key(db))


def test_sign_in_exchanges_the_key_for_an_httponly_strict_session_cookie(
    client: TestClient, db: sessionmaker[Session], seeded: Seeded
) -> None:
    response = sign_in(client, seeded.admin)
    assert response.status_code == 303  # type: ignore[attr-defined]
    assert response.headers["location"] == "/console/"  # type: ignore[attr-defined]
    cookie = response.headers["set-cookie"]  # type: ignore[attr-defined]
    assert re.search(r"console_session=[^;]+; HttpOnly; Path=/console; SameSite=strict", cookie)
    assert "Secure" not in cookie  # plain http (behind https it is set: next test)
    assert seeded.admin not in cookie
    token = client.cookies.get("console_session")
    assert token
    with db() as session:
        stored = list(session.scalars(select(ConsoleSession)))
    assert [s.token_hash for s in stored] == [hash_secret(token)]
    home = client.get("/console/", follow_redirects=False)
    assert home.headers["location"] == f"/console/schools/{seeded.key}"
    assert client.get(home.headers["location"]).status_code == 200


def test_behind_https_the_session_cookie_is_secure(app: FastAPI, db: sessionmaker[Session]) -> None:
    with TestClient(app, base_url="https://testserver") as https:
        keys = make_school(https, operator_key(db), "34CD", "Secure school")
        response = sign_in(https, keys["admin"])
    assert response.status_code == 303  # type: ignore[attr-defined]
    cookie = response.headers["set-cookie"]  # type: ignore[attr-defined]
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=strict" in cookie


def test_esis_and_unknown_keys_cannot_sign_in(
    client: TestClient, db: sessionmaker[Session], seeded: Seeded
) -> None:
    for secret, text in ((seeded.esis, "ESIS-sleutel"), ("esk_nonsense", "onbekend")):
        response = sign_in(client, secret)
        assert response.status_code == 401  # type: ignore[attr-defined]
        assert text in response.text  # type: ignore[attr-defined]
    with db() as session:
        assert session.scalar(select(func.count()).select_from(ConsoleSession)) == 0


def test_sign_in_without_its_csrf_token_is_refused(client: TestClient, seeded: Seeded) -> None:
    client.get("/console/login")
    response = client.post("/console/login", data={"key": seeded.admin}, follow_redirects=False)
    assert response.status_code == 403
    assert "console_session" not in response.headers.get("set-cookie", "")


def test_r5_a_form_without_its_csrf_token_is_refused(
    client: TestClient, db: sessionmaker[Session], seeded: Seeded
) -> None:
    sign_in(client, seeded.admin)
    before = drift_count(db)
    assert before == 3
    base = f"/console/schools/{seeded.key}"
    for data in ({"scope": "filter"}, {"scope": "filter", "csrf": "forged"}):
        refused = client.post(f"{base}/drift/accept", data=data, follow_redirects=False)
        assert refused.status_code == 403
        assert "beveiligingstoken" in refused.text
    assert drift_count(db) == before
    # The same form with the session's token goes through.
    token = csrf_of(client.get(f"{base}/drift").text)
    done = client.post(
        f"{base}/drift/accept", data={"scope": "filter", "csrf": token}, follow_redirects=False
    )
    assert done.status_code == 303
    assert drift_count(db) == 0
    assert "3 ESIS-waarden overgenomen" in client.get(done.headers["location"]).text


def test_another_schools_pages_answer_404(
    client: TestClient, db: sessionmaker[Session], seeded: Seeded
) -> None:
    other = make_school(client, seeded.operator, "56EF", "Andere school")
    sign_in(client, seeded.admin)
    token = csrf_of(client.get(f"/console/schools/{seeded.key}").text)
    for page in PAGES:
        assert client.get(f"/console/schools/{other['key']}{page}").status_code == 404
    accept = client.post(
        f"/console/schools/{other['key']}/drift/accept", data={"scope": "filter", "csrf": token}
    )
    assert accept.status_code == 404
    assert client.get("/console/schools").status_code == 404  # the operator's list
    assert client.get("/console/schools/ZZZZ99").status_code == 404


def test_an_expired_session_returns_to_sign_in(
    client: TestClient, db: sessionmaker[Session], seeded: Seeded
) -> None:
    sign_in(client, seeded.admin)
    page = f"/console/schools/{seeded.key}/drift"
    assert client.get(page).status_code == 200
    with db.begin() as session:
        session.execute(
            update(ConsoleSession).values(
                last_seen_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=31)
            )
        )
    response = client.get(page, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == f"/console/login?next={page.replace('/', '%2F')}"
    with db() as session:
        assert session.scalar(select(func.count()).select_from(ConsoleSession)) == 0
    # Signing in again lands on the page that was asked for.
    form = client.get(response.headers["location"])
    again = client.post(
        "/console/login",
        data={"key": seeded.admin, "csrf": csrf_of(form.text), "next": page},
        follow_redirects=False,
    )
    assert again.headers["location"] == page


def test_a_revoked_key_ends_its_session(
    client: TestClient, db: sessionmaker[Session], seeded: Seeded
) -> None:
    sign_in(client, seeded.admin)
    assert client.get(f"/console/schools/{seeded.key}").status_code == 200
    keys = client.get(f"/api/v1/schools/{seeded.key}/api-keys", headers=bearer(seeded.operator))
    admin_key = next(k for k in keys.json()["items"] if k["role"] == "admin")
    revoked = client.delete(
        f"/api/v1/schools/{seeded.key}/api-keys/{admin_key['id']}", headers=bearer(seeded.operator)
    )
    assert revoked.status_code == 204
    assert client.get(f"/console/schools/{seeded.key}", follow_redirects=False).status_code == 303


def test_r5_a_reader_sees_drift_but_cannot_accept(
    client: TestClient, db: sessionmaker[Session], seeded: Seeded
) -> None:
    sign_in(client, seeded.reader)
    base = f"/console/schools/{seeded.key}"
    page = client.get(f"{base}/drift")
    assert page.status_code == 200
    assert "nieuw.ouder1@example.nl" in page.text
    assert 'type="checkbox"' not in page.text and "overnemen</button>" not in page.text
    token = csrf_of(page.text)  # the sign-out form's
    for path, data in (
        ("/drift/accept", {"scope": "filter"}),
        (f"/deleted/student/{seeded.deleted_student}/restore", {}),
        ("/activation", {}),
    ):
        refused = client.post(f"{base}{path}", data={**data, "csrf": token})
        assert refused.status_code == 403, path
    assert drift_count(db) == 3
    for page_path in PAGES:
        assert client.get(f"{base}{page_path}").status_code == 200, page_path


def test_logout_ends_the_session(
    client: TestClient, db: sessionmaker[Session], seeded: Seeded
) -> None:
    sign_in(client, seeded.admin)
    token = csrf_of(client.get(f"/console/schools/{seeded.key}").text)
    out = client.post("/console/logout", data={"csrf": token}, follow_redirects=False)
    assert out.status_code == 303
    with db() as session:
        assert session.scalar(select(func.count()).select_from(ConsoleSession)) == 0
    client.cookies.set("console_session", "stale", path="/console")
    assert client.get(f"/console/schools/{seeded.key}", follow_redirects=False).status_code == 303


def test_every_page_renders_in_dutch_and_english_for_the_operator(
    client: TestClient, seeded: Seeded
) -> None:
    sign_in(client, seeded.operator)
    listing = client.get("/console/schools?sort=drift&order=desc&only=drift")
    assert listing.status_code == 200 and seeded.key in listing.text
    assert '<html lang="nl">' in listing.text
    for page in PAGES:
        nl = client.get(f"/console/schools/{seeded.key}{page}")
        assert nl.status_code == 200, page
        assert '<html lang="nl">' in nl.text
    english = client.get(f"/console/schools/{seeded.key}/year-transition?lang=en")
    assert '<html lang="en">' in english.text and "Held year transitions (1)" in english.text
    # The choice is remembered for the next page.
    assert '<html lang="en">' in client.get(f"/console/schools/{seeded.key}").text


def test_a_runs_csv_report_lists_counts_and_touched_records(
    client: TestClient, seeded: Seeded
) -> None:
    sign_in(client, seeded.admin)
    runs = client.get(f"/api/v1/schools/{seeded.key}/sync-runs", headers=bearer(seeded.admin))
    activation = next(r for r in runs.json()["items"] if r["kind"] == "activation")
    page = client.get(f"/console/schools/{seeded.key}/runs/{activation['id']}")
    assert page.status_code == 200 and "Koppelrapport" in page.text
    report = client.get(f"/console/schools/{seeded.key}/runs/{activation['id']}/report.csv")
    assert report.status_code == 200
    assert report.headers["content-type"].startswith("text/csv")
    assert "attachment" in report.headers["content-disposition"]
    lines = report.text.splitlines()
    assert lines[0] == "section,entity,name,value"
    assert "count,student,added,10" in lines
    assert sum(1 for line in lines if line.startswith("record,student,")) == 10


def test_accept_language_picks_the_language_and_dutch_is_the_default() -> None:
    assert pick_language(None, None, None) == "nl"
    assert pick_language(None, None, "en-GB,en;q=0.9") == "en"
    assert pick_language(None, None, "de-DE,fr;q=0.5") == "nl"
    assert pick_language(None, "en", "nl") == "en"
    assert pick_language("nl", "en", "en") == "nl"


def _catalog(lang: str) -> dict[str, str]:
    text = (LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po").read_text()
    return dict(re.findall(r'^msgid "(.+)"\nmsgstr "(.*)"$', text, flags=re.MULTILINE))


def test_every_text_is_in_both_catalogs_and_the_compiled_files_are_current() -> None:
    nl, en = _catalog("nl"), _catalog("en")
    assert set(nl) == set(en)
    assert all(nl.values()) and all(en.values())
    used: set[str] = set()
    for path in [*CONSOLE.glob("templates/*.html"), *CONSOLE.glob("*.py")]:
        used |= set(re.findall(r"""_\(\s*["']([a-z_]+(?:\.[a-z_]+)+)["']""", path.read_text()))
        used |= set(re.findall(r"""flash\(request, [^,]+, ["']([a-z_.]+)["']""", path.read_text()))
    assert used - set(nl) == set(), "texts used but missing from the catalogs"
    for lang in ("nl", "en"):
        po = LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po"
        assert po.with_suffix(".mo").read_bytes() == compile_catalog(po), (
            f"{lang}: run `python -m app.console.i18n` to compile the catalog"
        )


def test_r3_the_next_scheduled_pull_waits_out_the_quarantine_back_off(
    client: TestClient,
    db: sessionmaker[Session],
    settings: Settings,
    fake_esis_pulls: FakeEsisPulls,
) -> None:
    school = factories.make_school(client, db, daily_sync_time="06:00:00")
    fake_esis_pulls.connect(client, school)
    snap = school_snapshot(students=4)
    for member in snap["staff"]:
        member["roles"] = ["LRK"]  # EDEXml role codes
    assert fake_esis_pulls.pull(client, school, snap).json()["status"] == "stored"
    activated = client.post(
        f"/api/v1/schools/{school.key}/esis/activation", headers=auth(school.admin)
    )
    assert activated.status_code == 201, activated.text
    fake_esis_pulls.esis.script("12AB", "00", mode="fault")
    for _ in range(settings.pull_quarantine_failures):
        pulled = client.post(f"/api/v1/schools/{school.key}/esis/pulls", headers=auth(school.admin))
        assert pulled.json()["status"] == "failed", pulled.text
    health = client.get(f"/api/v1/schools/{school.key}/esis/health", headers=auth(school.admin))
    assert health.json()["state"] == "quarantined", health.text
    resumes_on = dt.date.fromisoformat(health.json()["next_scheduled_pull_on"])
    expected = dt.datetime.combine(resumes_on, dt.time(6), tzinfo=settings.tz)

    sign_in(client, school.admin)
    overview = client.get(f"/console/schools/{school.key}")
    assert overview.status_code == 200
    shown = re.search(r"<dt>Volgende geplande ophaalactie</dt>\s*<dd>(.*?)</dd>", overview.text)
    assert shown, overview.text
    assert Texts("nl", settings.tz).when(expected) in shown.group(1)
    assert "quarantaine" in shown.group(1)

    # The scheduler agrees: no pull before that moment, one at it.
    options = PullOptions(limits=PushLimits(max_records=10_000, per_minute=100), attempts=1)
    served = fake_esis_pulls.esis.served("12AB", "00")
    before = expected - dt.timedelta(minutes=1)
    assert run_due(sessions=db, settings=settings, options=options, now=before) == []
    assert fake_esis_pulls.esis.served("12AB", "00") == served
    [scheduled] = run_due(sessions=db, settings=settings, options=options, now=expected)
    assert scheduled.status == "failed"
    assert fake_esis_pulls.esis.served("12AB", "00") == served + 1


SCHOOL_ROW = re.compile(r'<tr class="[a-z]*">\s*<td><a href="/console/schools/(\w+)">')


def _listed(client: TestClient, query: str) -> tuple[list[str], str]:
    page = client.get(f"/console/schools?{query}")
    assert page.status_code == 200, page.text[:500]
    return SCHOOL_ROW.findall(page.text), page.text


def test_the_operators_list_comes_in_pages_that_keep_the_sort_and_filter(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    operator = operator_key(db)
    count = PAGE_SIZE + 5
    for n in range(count):
        made = client.post(
            "/api/v1/schools",
            json={"brin": f"{10 + n:02d}PG", "name": f"School {count - n:03d}"},
            headers=bearer(operator),
        )
        assert made.status_code == 201, made.text
    keys = sorted(f"{10 + n:02d}PG00" for n in range(count))
    sign_in(client, operator)

    first, html = _listed(client, "")
    assert first == keys[:PAGE_SIZE]
    assert f"{count} van {count} scholen (pagina 1 van 2: 1 tot en met {PAGE_SIZE})" in html
    assert 'rel="next"' in html and 'rel="prev"' not in html
    second, html = _listed(client, "page=2")
    assert second == keys[PAGE_SIZE:]
    assert 'rel="prev"' in html and 'rel="next"' not in html
    assert _listed(client, "page=99")[0] == second  # past the end: the last page

    # The links carry the sort, the order, the search and the filter.
    by_name, html = _listed(client, "sort=name&order=desc&q=pg")
    assert by_name == keys[:PAGE_SIZE]  # School 055 is 10PG00
    assert "/console/schools?sort=name&amp;order=desc&amp;q=pg&amp;only=&amp;page=2" in html
    assert _listed(client, "sort=name&order=desc&q=pg&page=2")[0] == keys[PAGE_SIZE:]
    # Sorting by a figure reads every school's health, then pages the same way.
    by_drift = [
        *_listed(client, "sort=drift&order=asc")[0],
        *_listed(client, "sort=drift&order=asc&page=2")[0],
    ]
    assert sorted(by_drift) == keys and len(by_drift) == count
    few, html = _listed(client, "q=school+00")  # School 001-009 by name
    assert few == keys[-9:] and 'rel="next"' not in html
    assert f"9 van {count} scholen" in html and "pagina" not in html
    assert _listed(client, "q=61pg")[0] == ["61PG00"]  # by key
    assert _listed(client, "only=failing")[0] == []

    assert client.get("/console/schools?page=0").status_code == 422
    assert client.get("/console/schools?page=x").status_code == 422


CORPUS = Path(__file__).resolve().parent / "fixtures" / "uwlr-corpus"


def test_a_pull_esis_answers_with_no_changes_ends_the_failures_the_console_counts(
    client: TestClient, db: sessionmaker[Session], fake_esis_pulls: FakeEsisPulls
) -> None:
    """The console counts failed pulls as the connection health does: `geenwijzigingen` is
    an answer, so the school is no longer listed as failing."""
    school = factories.make_school(client, db)
    fake_esis_pulls.connect(client, school)
    failed = fake_esis_pulls.pull(client, school, b"this is not a UWLR answer")
    assert failed.json()["status"] == "failed", failed.text
    sign_in(client, school.operator)
    assert _listed(client, "only=failing")[0] == [school.key]
    answered = fake_esis_pulls.pull(client, school, (CORPUS / "geenwijzigingen.xml").read_bytes())
    assert answered.json()["status"] == "no_changes", answered.text
    health = client.get(f"/api/v1/schools/{school.key}/esis/health", headers=auth(school.admin))
    assert health.status_code == 200, health.text
    assert health.json()["state"] == "healthy"
    assert _listed(client, "only=failing")[0] == []
