from __future__ import annotations

import datetime as dt

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import col, select

from app.auth.models import ApiKey
from app.config import Settings
from app.events.models import Event
from app.main import create_app
from tests.factories import auth, make_school, operator_key


def test_create_and_read_school(client: TestClient, db: sessionmaker[Session]) -> None:
    school = make_school(client, db, brin="12ab", branch="01", name="De Regenboog")
    assert school.key == "12AB01"
    got = client.get("/api/v1/schools/12ab01", headers=auth(school.reader))
    assert got.status_code == 200
    body = got.json()
    assert body["coupling"] == "inactive"
    assert body["update_policy"] == "ignore"
    assert body["removal_guard_share"] == 0.3
    assert body["daily_sync_time"] == "17:00:00"


def test_duplicate_school_is_a_conflict_problem(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db)
    again = client.post(
        "/api/v1/schools", json={"brin": "12AB", "name": "x"}, headers=auth(school.operator)
    )
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    assert again.json()["type"] == "/problems/conflict"
    assert "12AB00" in again.json()["detail"]


def test_invalid_school_names_the_field(client: TestClient, db: sessionmaker[Session]) -> None:
    op = operator_key(db)
    response = client.post("/api/v1/schools", json={"brin": "ABCD", "name": ""}, headers=auth(op))
    assert response.status_code == 422
    problem = response.json()
    assert problem["type"] == "/problems/validation"
    fields = {e["field"] for e in problem["errors"]}
    assert fields == {"brin", "name"}


def test_patch_policy_records_an_event(client: TestClient, db: sessionmaker[Session]) -> None:
    school = make_school(client, db)
    response = client.patch(
        f"/api/v1/schools/{school.key}",
        json={
            "update_policy": "apply_unedited",
            "removal_guard_share": 0.2,
            "daily_sync_time": "18:30",
        },
        headers=auth(school.admin),
    )
    assert response.status_code == 200, response.text
    assert response.json()["update_policy"] == "apply_unedited"
    assert response.json()["daily_sync_time"] == "18:30:00"
    with db() as session:
        kinds = [e.kind for e in session.scalars(select(Event).order_by(col(Event.seq)))]
    assert kinds[0] == "created" and kinds[-1] == "updated"


def test_patch_rejects_out_of_range_guard(client: TestClient, db: sessionmaker[Session]) -> None:
    school = make_school(client, db)
    response = client.patch(
        f"/api/v1/schools/{school.key}",
        json={"removal_guard_share": 1.5},
        headers=auth(school.admin),
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "removal_guard_share"


def test_keys_are_stored_hashed_and_shown_once(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db)
    made = client.post(
        f"/api/v1/schools/{school.key}/api-keys",
        json={"role": "reader", "name": "app"},
        headers=auth(school.admin),
    )
    secret = made.json()["secret"]
    with db() as session:
        stored = session.scalars(select(ApiKey.secret_hash)).all()
    assert secret not in stored and all(len(h) == 64 for h in stored)
    listed = client.get(f"/api/v1/schools/{school.key}/api-keys", headers=auth(school.admin))
    assert secret not in listed.text and "secret" not in listed.json()["items"][0]


def test_revoked_key_stops_working(client: TestClient, db: sessionmaker[Session]) -> None:
    school = make_school(client, db)
    made = client.post(
        f"/api/v1/schools/{school.key}/api-keys",
        json={"role": "reader", "name": "app"},
        headers=auth(school.admin),
    ).json()
    assert (
        client.get(f"/api/v1/schools/{school.key}", headers=auth(made["secret"])).status_code == 200
    )
    revoked = client.delete(
        f"/api/v1/schools/{school.key}/api-keys/{made['id']}", headers=auth(school.admin)
    )
    assert revoked.status_code == 204
    assert (
        client.get(f"/api/v1/schools/{school.key}", headers=auth(made["secret"])).status_code == 401
    )
    again = client.delete(
        f"/api/v1/schools/{school.key}/api-keys/{made['id']}", headers=auth(school.admin)
    )
    assert again.status_code == 404


def test_admin_cannot_make_operator_keys(client: TestClient, db: sessionmaker[Session]) -> None:
    school = make_school(client, db)
    response = client.post(
        f"/api/v1/schools/{school.key}/api-keys",
        json={"role": "operator", "name": "x"},
        headers=auth(school.admin),
    )
    assert response.status_code == 403


def test_operator_lists_schools_with_cursor(client: TestClient, db: sessionmaker[Session]) -> None:
    op = operator_key(db)
    for brin in ("11AA", "22BB", "33CC"):
        make_school(client, db, brin=brin, operator=op)
    first = client.get("/api/v1/schools?limit=2", headers=auth(op)).json()
    assert [s["key"] for s in first["items"]] == ["11AA00", "22BB00"]
    second = client.get(f"/api/v1/schools?limit=2&cursor={first['next_cursor']}", headers=auth(op))
    assert [s["key"] for s in second.json()["items"]] == ["33CC00"]
    assert second.json()["next_cursor"] is None
    bad = client.get("/api/v1/schools?cursor=%%%", headers=auth(op))
    assert bad.status_code == 422


def test_r3_a_new_schools_daily_pull_defaults_to_the_daily_cutoff(
    settings: Settings, db: sessionmaker[Session]
) -> None:
    """ESIS_SYNC_DAILY_CUTOFF is the daily sync time of a school created without one."""
    later = settings.model_copy(update={"daily_cutoff": dt.time(18, 15)})
    application = create_app(later)
    try:
        with TestClient(application, raise_server_exceptions=False) as client:
            make_school(client, db, brin="12AB")
            make_school(client, db, brin="34CD", daily_sync_time="16:30")
            got = {
                s["key"]: s["daily_sync_time"]
                for s in client.get("/api/v1/schools", headers=auth(operator_key(db))).json()[
                    "items"
                ]
            }
    finally:
        application.state.engine.dispose()
    assert got == {"12AB00": "18:15:00", "34CD00": "16:30:00"}
