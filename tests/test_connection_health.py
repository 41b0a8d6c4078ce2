"""Connection health through a real fake ESIS on loopback: failing, quarantine with a backing
off schedule, recovery by a successful pull, certificate expiry warnings, and the test
connection that plans a merge without writing anything."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.coupling.health import check_certificates
from app.coupling.pulls import PullOptions, run_due
from app.coupling.receive import PushLimits
from app.db import utcnow
from app.worker import run as run_worker
from fake_esis.pki import make_cert
from fake_esis.server import DEFAULT_AUTORISATIE, FakeEsis, FakeEsisKit
from tests.factories import SchoolKeys, auth, make_school
from tests.merge_helpers import rows
from tests.snapshots import school_snapshot


def _snap(students: int = 4) -> dict[str, Any]:
    snap = school_snapshot(students=students)
    for member in snap["staff"]:
        member["roles"] = ["LRK"]  # EDEXml role codes
    return snap


def _connect(
    client: TestClient, school: SchoolKeys, esis: FakeEsis, kit: FakeEsisKit, cert: Any = None
) -> None:
    pair = cert or kit.client
    response = client.put(
        f"/api/v1/schools/{school.key}/esis/connection",
        json={
            "url": esis.url,
            "certificate": {"cert_pem": pair.cert.decode(), "key_pem": pair.key.decode()},
            "ca_pem": kit.ca.cert.decode(),
            **DEFAULT_AUTORISATIE,
        },
        headers=auth(school.admin),
    )
    assert response.status_code == 200, response.text


def _pull(client: TestClient, school: SchoolKeys) -> dict[str, Any]:
    response = client.post(f"/api/v1/schools/{school.key}/esis/pulls", headers=auth(school.admin))
    assert response.status_code == 201, response.text
    run: dict[str, Any] = response.json()
    return run


def _health(client: TestClient, school: SchoolKeys) -> dict[str, Any]:
    response = client.get(f"/api/v1/schools/{school.key}/esis/health", headers=auth(school.admin))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _active(
    client: TestClient, db: sessionmaker[Session], esis: FakeEsis, kit: FakeEsisKit
) -> SchoolKeys:
    school = make_school(client, db, daily_sync_time="00:00:00")
    _connect(client, school, esis, kit)
    esis.script("12AB", "00", answer=_snap())
    assert _pull(client, school)["status"] == "stored"
    activated = client.post(
        f"/api/v1/schools/{school.key}/esis/activation", headers=auth(school.admin)
    )
    assert activated.status_code == 201, activated.text
    return school


def _events(db: sessionmaker[Session], kind: str) -> list[dict[str, Any]]:
    return [e for e in rows(db, "event") if e["entity"] == "esis_connection" and e["kind"] == kind]


def test_failed_pulls_quarantine_the_connection_and_a_good_pull_ends_it(
    client: TestClient,
    db: sessionmaker[Session],
    esis: FakeEsis,
    kit: FakeEsisKit,
    settings: Settings,
) -> None:
    school = _active(client, db, esis, kit)
    assert _health(client, school)["state"] == "healthy"
    esis.script("12AB", "00", mode="fault")
    states = []
    for _ in range(4):
        assert _pull(client, school)["status"] == "failed"  # a manual pull always runs
        states.append(_health(client, school)["state"])
    assert states == ["failing", "failing", "quarantined", "quarantined"]
    health = _health(client, school)
    assert health["consecutive_failures"] == 4 and health["last_error"] is not None
    [entered] = _events(db, "quarantined")  # once, when the third failure made it so
    assert entered["changes"]["consecutive_failures"] == 3
    shown = client.get(
        f"/api/v1/schools/{school.key}/esis/connection", headers=auth(school.admin)
    ).json()
    assert shown["health"]["state"] == "quarantined"

    options = PullOptions(limits=PushLimits(max_records=10_000, per_minute=100), attempts=1)
    served = esis.served("12AB", "00")
    now = utcnow()
    assert run_due(sessions=db, settings=settings, options=options, now=now) == []
    assert esis.served("12AB", "00") == served  # backing off: ESIS is not asked
    later = now + dt.timedelta(days=4)
    # The date is the school's (Europe/Amsterdam): from 23:00 UTC it is the next day there.
    assert (
        dt.date.fromisoformat(health["next_scheduled_pull_on"])
        <= later.astimezone(settings.tz).date()
    )
    [scheduled] = run_due(sessions=db, settings=settings, options=options, now=later)
    assert scheduled.status == "failed" and esis.served("12AB", "00") == served + 1

    esis.script("12AB", "00", answer=_snap())
    assert _pull(client, school)["status"] == "applied"
    assert _health(client, school)["state"] == "healthy"
    [ended] = _events(db, "quarantine-ended")
    assert ended["changes"]["consecutive_failures"] == 5


def test_certificate_expiry_is_announced_at_30_7_and_1_days_once_each(
    client: TestClient,
    db: sessionmaker[Session],
    esis: FakeEsis,
    kit: FakeEsisKit,
    settings: Settings,
) -> None:
    school = make_school(client, db)
    now = utcnow()
    short = make_cert(kit.ca, "12AB00 client", server=False, not_after=now + dt.timedelta(days=20))
    _connect(client, school, esis, kit, cert=short)
    run_worker(settings, stop=threading.Event(), once=True)  # the worker's pass checks
    run_worker(settings, stop=threading.Event(), once=True)
    assert [e["changes"]["within_days"] for e in _events(db, "certificate-expiring")] == [30]
    for days in (14, 15, 19.5, 19.6):
        check_certificates(sessions=db, now=now + dt.timedelta(days=days))
    warned = [e["changes"]["within_days"] for e in _events(db, "certificate-expiring")]
    assert warned == [30, 7, 1]
    assert _health(client, school)["certificate"]["expiring_within_days"] == 30
    metrics = client.get("/metrics").text
    assert 'esis_sync_client_certificate_expiry_seconds{school="12AB00"}' in metrics
    assert 'esis_sync_client_certificates_expiring{within_days="30"} 1.0' in metrics
    assert 'esis_sync_client_certificates_expiring{within_days="7"} 0.0' in metrics
    # A new certificate: warned afresh when it nears its own expiry.
    _connect(client, school, esis, kit)
    check_certificates(sessions=db, now=now)
    assert len(_events(db, "certificate-expiring")) == 3


def test_test_connection_says_what_a_pull_would_do_and_writes_nothing(
    client: TestClient, db: sessionmaker[Session], esis: FakeEsis, kit: FakeEsisKit
) -> None:
    school = _active(client, db, esis, kit)
    tomorrow = _snap(students=5)  # one new student and their guardian
    tomorrow["guardians"][0]["email"] = "changed@example.nl"
    esis.script("12AB", "00", answer=tomorrow)
    before = {t: rows(db, t) for t in ("snapshot", "sync_run", "event", "student", "drift_item")}
    url = f"/api/v1/schools/{school.key}/esis/connection/test"
    assert client.post(url, headers=auth(school.reader)).status_code == 403
    response = client.post(url, headers=auth(school.admin))
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["reachable"] is True and result["error"] is None
    assert result["records"]["students"] == 5
    assert result["would"]["student"]["added"] == 1
    assert result["would"]["guardian"]["drift_opened"] == 1
    assert result["readiness"]["ready"] is True
    assert result["would_start_year_transition"] is False
    after = {t: rows(db, t) for t in before}
    assert after == before

    esis.script("12AB", "00", mode="fault")
    failed = client.post(url, headers=auth(school.admin)).json()
    assert failed["reachable"] is False and failed["error"]["kind"] == "fault"
    assert rows(db, "sync_run") == before["sync_run"]  # not a pull: no run, no health change
