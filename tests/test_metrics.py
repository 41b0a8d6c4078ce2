"""`/metrics`: traffic by route, sync runs by outcome, drift, sync age; no personal data."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import auth, make_school
from tests.merge_helpers import activate, push
from tests.snapshots import changed, find, school_snapshot


def _value(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if not line.startswith(name + ("{" if labels else " ")):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name} {labels} in metrics")


def test_metrics_after_a_sync(client: TestClient, db: sessionmaker[Session]) -> None:
    school = make_school(client, db)
    snap = school_snapshot(students=3)
    activate(client, school, snap)
    later = changed(snap)
    find(later, "students", "S0001")["last_name"] = "Anders"
    push(client, school, later)
    client.get(f"/api/v1/schools/{school.key}/students", headers=auth(school.reader))
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert _value(text, "esis_sync_sync_runs", origin="push", kind="merge", status="applied") == 1
    assert (
        _value(text, "esis_sync_sync_runs", origin="push", kind="activation", status="applied") == 1
    )
    assert _value(text, "esis_sync_drift_open") == 1
    assert _value(text, "esis_sync_last_successful_sync_age_seconds", school=school.key) >= 0
    assert (
        _value(
            text,
            "esis_sync_http_requests_total",
            method="GET",
            route="/api/v1/schools/{school}/students",
            status="200",
        )
        >= 1
    )
    assert _value(text, "esis_sync_merge_duration_seconds_count", kind="merge") >= 1
    assert "# TYPE esis_sync_jobs gauge" in text
    assert "Anders" not in text
    assert not re.search(r"@example\.nl", text)
