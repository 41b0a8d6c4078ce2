"""The change feed: per school, oldest first, resumable by cursor without gaps or repeats."""

from __future__ import annotations

import base64
import json
import threading
from collections import Counter
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import SchoolKeys, auth, make_school, operator_key
from tests.merge_helpers import activate, applied, one, push
from tests.snapshots import Snapshot, changed, find, school_snapshot

Page = dict[str, Any]


def feed(client: TestClient, school: SchoolKeys, **params: Any) -> Page:
    response = client.get(
        f"/api/v1/schools/{school.key}/events", params=params, headers=auth(school.reader)
    )
    assert response.status_code == 200, response.text
    page: Page = response.json()
    assert isinstance(page["next_cursor"], str)
    return page


def read_all(
    client: TestClient, school: SchoolKeys, after: str | None = None, limit: int = 3, **filters: Any
) -> tuple[list[dict[str, Any]], str | None]:
    """Page through to the first empty page; returns the events and the cursor to resume."""
    events: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": limit, **filters}
    while True:
        page = feed(client, school, **params, **({"after": after} if after else {}))
        if not page["items"]:
            assert after is None or page["next_cursor"] == after
            return events, page["next_cursor"]
        assert len(page["items"]) <= limit
        events.extend(page["items"])
        after = page["next_cursor"]


def seqs(events: list[dict[str, Any]]) -> list[int]:
    return [e["seq"] for e in events]


def with_student(snap: Snapshot, i: int) -> Snapshot:
    """The snapshot with one more student (and guardian) numbered `i`."""
    more = changed(snap)
    more["students"].append(
        {
            "key": f"S{i:04d}",
            "last_name": f"Leerling{i}",
            "given_name": f"Kind{i}",
            "group": "G5A",
            "year_level": 5,
        }
    )
    more["guardians"].append(
        {
            "key": f"V{i:04d}",
            "last_name": f"Ouder{i}",
            "email": f"ouder{i}@example.nl",
            "students": [{"student": f"S{i:04d}", "relation": "father"}],
        }
    )
    return more


@pytest.fixture
def school(client: TestClient, db: sessionmaker[Session]) -> SchoolKeys:
    return make_school(client, db)


def test_feed_lists_every_change_oldest_first_without_gaps(
    client: TestClient, school: SchoolKeys
) -> None:
    run = activate(client, school, school_snapshot(students=4))
    page = feed(client, school, limit=1000)
    events = page["items"]
    assert seqs(events) == list(range(1, len(events) + 1))
    assert (events[0]["entity"], events[0]["kind"], events[0]["source"]) == (
        "school",
        "created",
        "api",
    )
    created = Counter(e["entity"] for e in events if e["sync_run_id"] == run["id"])
    assert created["student"] == 4
    assert created["guardian"] == 4
    assert created["group"] == 3
    assert created["staff"] == 2
    student = next(e for e in events if e["entity"] == "student")
    assert student["kind"] == "created"
    assert (student["source"], student["actor"]) == ("esis", "esis")
    assert student["changes"]["esis_key"] == {"before": None, "after": "S0001"}
    assert student["occurred_at"].endswith(("Z", "+00:00"))
    assert set(student) == {
        "seq",
        "occurred_at",
        "entity",
        "entity_id",
        "kind",
        "changes",
        "source",
        "actor",
        "sync_run_id",
    }
    coupling = [e for e in events if e["entity"] == "school" and "coupling" in e["changes"]]
    assert coupling[0]["actor"].startswith("key:")
    assert page["next_cursor"] == feed(client, school, limit=len(events))["next_cursor"]


def test_paging_yields_every_event_once_and_a_follower_resumes(
    client: TestClient, db: sessionmaker[Session], school: SchoolKeys
) -> None:
    snap = school_snapshot(students=4)
    activate(client, school, snap)
    everything = feed(client, school, limit=1000)["items"]
    paged, cursor = read_all(client, school, limit=3)
    assert paged == everything
    assert cursor is not None

    # Nothing new: the same cursor comes back, however often a follower asks.
    for _ in range(2):
        empty = feed(client, school, after=cursor)
        assert empty == {"items": [], "next_cursor": cursor}

    later = changed(snap)
    find(later, "guardians", "V0001")["phone"] = "+31687654321"
    run = applied(push(client, school, later))
    new, resumed = read_all(client, school, after=cursor, limit=2)
    assert seqs(new) == list(range(len(everything) + 1, len(everything) + 1 + len(new)))
    assert [e["kind"] for e in new] == ["drift-opened"]
    guardian_id = str(one(db, "guardian", esis_key="V0001")["id"])
    assert new[0]["entity"] == "guardian"
    assert new[0]["entity_id"] == guardian_id
    assert new[0]["changes"] == {"phone": {"ours": "+31612345678", "esis": "+31687654321"}}
    assert new[0]["sync_run_id"] == run["id"]
    assert feed(client, school, limit=1000)["items"] == everything + new
    assert feed(client, school, after=resumed) == {"items": [], "next_cursor": resumed}


def test_filters_give_one_records_audit_trail(
    client: TestClient, db: sessionmaker[Session], school: SchoolKeys
) -> None:
    snap = school_snapshot(students=3)
    activate(client, school, snap)
    later = changed(snap)
    find(later, "guardians", "V0001")["phone"] = "+31687654321"
    applied(push(client, school, later))
    guardian_id = str(one(db, "guardian", esis_key="V0001")["id"])

    trail, _ = read_all(client, school, limit=1, entity="guardian", entity_id=guardian_id)
    assert [e["kind"] for e in trail] == ["created", "drift-opened"]
    assert {e["entity_id"] for e in trail} == {guardian_id}
    assert trail[0]["seq"] < trail[1]["seq"]
    assert feed(client, school, entity_id=guardian_id, limit=1000)["items"] == trail

    guardians = feed(client, school, entity="guardian", limit=1000)["items"]
    assert len({e["entity_id"] for e in guardians}) == 3
    assert {e["entity"] for e in guardians} == {"guardian"}

    drift = feed(client, school, kind="drift-opened")["items"]
    assert drift == trail[1:]
    assert feed(client, school, entity="staff", entity_id=guardian_id)["items"] == []


def test_another_schools_events_are_invisible(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    op = operator_key(db)
    school_a = make_school(client, db, brin="11AA", operator=op)
    school_b = make_school(client, db, brin="22BB", operator=op)
    activate(client, school_b, school_snapshot(brin="22BB", students=2))
    a_events = feed(client, school_a, limit=1000)["items"]
    b_events = feed(client, school_b, limit=1000)["items"]
    assert seqs(a_events) == list(range(1, len(a_events) + 1))  # numbered per school
    assert {e["entity"] for e in a_events} == {"school", "api_key"}
    b_ids = {e["entity_id"] for e in b_events}
    assert not b_ids & {e["entity_id"] for e in a_events}
    # Filtering by a record of the other school finds nothing.
    student_b = next(e["entity_id"] for e in b_events if e["entity"] == "student")
    assert feed(client, school_a, entity_id=student_b)["items"] == []
    # B's key may not read A's feed: A does not exist for it.
    response = client.get(f"/api/v1/schools/{school_a.key}/events", headers=auth(school_b.reader))
    assert response.status_code == 404
    # The operator sees every school's feed.
    as_operator = client.get(f"/api/v1/schools/{school_b.key}/events", headers=auth(op))
    assert as_operator.json()["items"] == b_events[:100]


def _cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "params",
    [
        {"after": "not a cursor!"},
        {"after": _cursor("seven")},
        {"after": _cursor(-1)},
        {"after": _cursor(True)},
        {"after": _cursor([3])},
        {"after": _cursor(1.5)},
        {"limit": 0},
        {"limit": 1001},
        {"entity_id": "not-a-uuid"},
    ],
)
def test_invalid_query_is_a_422_problem(
    client: TestClient, school: SchoolKeys, params: dict[str, Any]
) -> None:
    response = client.get(
        f"/api/v1/schools/{school.key}/events", params=params, headers=auth(school.reader)
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"] == "/problems/validation"
    assert body["status"] == 422


def test_pagination_is_stable_under_concurrent_writes(
    client: TestClient, db: sessionmaker[Session], school: SchoolKeys
) -> None:
    snap = school_snapshot(students=2)
    activate(client, school, snap)
    statuses: list[int] = []
    done = threading.Event()

    def writer() -> None:
        current = snap
        try:
            for i in range(100, 110):
                current = with_student(current, i)
                statuses.append(push(client, school, current).status_code)
        finally:
            done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    read: list[int] = []
    cursor: str | None = None
    pages_while_writing = 0
    limits = [1, 2, 3, 5]
    try:
        while True:
            writing = not done.is_set()
            params: dict[str, Any] = {"limit": limits[len(read) % len(limits)]}
            if cursor is not None:
                params["after"] = cursor
            page = feed(client, school, **params)
            got = seqs(page["items"])
            # Every page continues exactly where the last one stopped.
            start = read[-1] + 1 if read else 1
            assert got == list(range(start, start + len(got)))
            read.extend(got)
            cursor = page["next_cursor"]
            pages_while_writing += writing
            if not got and not writing:
                break
    finally:
        thread.join()
    assert statuses == [201] * 10
    assert pages_while_writing > 0
    last = int(one(db, "school", key=school.key)["event_seq"])
    assert read == list(range(1, last + 1))
    assert len(set(read)) == len(read)
    students = feed(client, school, entity="student", kind="created", limit=1000)["items"]
    assert len(students) == 12


def test_openapi_documents_the_feed(app: FastAPI) -> None:
    schema = app.openapi()
    operation = schema["paths"]["/api/v1/schools/{school}/events"]["get"]
    assert operation["summary"]
    assert "next_cursor" in operation["description"]
    assert "drift-opened" in operation["description"]
    assert {"401", "403", "404", "422"} <= set(operation["responses"])
    params = {p["name"] for p in operation["parameters"]}
    assert {"school", "after", "limit", "entity", "entity_id", "kind"} <= params
    event = schema["components"]["schemas"]["EventPublic"]
    assert event["examples"][0]["kind"] == "drift-opened"
    assert all(field.get("description") for field in event["properties"].values())
    assert "next_cursor" in schema["components"]["schemas"]["EventList"]["required"]
