"""What an outside attack found (issue 13), kept as a corpus: each request gets a 4xx problem
of ours (never a 500, never `about:blank`), on both databases.

`ATTACKS` is data: a name, the request and the answer it must get. The requests run against a
school that is not yet active and holds one local student (so PATCH and POST have something
to reach). The cases about state (replays, stale snapshots, national ids, refused bodies,
readiness) follow the corpus as tests of their own.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import SchoolKeys, auth, make_school
from tests.snapshots import school_snapshot


@dataclass(frozen=True)
class Target:
    school: SchoolKeys
    student_id: str


@dataclass(frozen=True)
class Attack:
    name: str
    method: str
    path: str  # `{school}` and `{student}` are filled in
    status: int
    problem: str  # the problem type's slug
    body: Callable[[Target], bytes] | None = None
    content_type: str = "application/json"
    role: str = "admin"
    headers: dict[str, str] = field(default_factory=dict)


def _cursor(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def _json(value: object) -> Callable[[Target], bytes]:
    return lambda _t: json.dumps(value).encode()


def _snapshot_with(**extra: Any) -> Callable[[Target], bytes]:
    snap = school_snapshot(students=2)
    snap.update(extra)
    return _json(snap)


def _nul_snapshot(_t: Target) -> bytes:
    snap = school_snapshot(students=2)
    snap["students"][0]["last_name"] = "Jan\u0000sen"
    return json.dumps(snap).encode()


def _many_attributes(_t: Target) -> bytes:
    attributes = " ".join(f'a{i}="1"' for i in range(100_000))
    return f'<?xml version="1.0"?><EDEX {attributes}><school/></EDEX>'.encode()


def _same_student_twice(t: Target) -> bytes:
    return json.dumps({"name": "Instromers", "student_ids": [t.student_id, t.student_id]}).encode()


PUSH = "/api/v1/schools/{school}/esis/snapshots"
STUDENTS = "/api/v1/schools/{school}/students"
STUDENT = "/api/v1/schools/{school}/students/{student}"
RUNS = "/api/v1/schools/{school}/sync-runs"
UUID = "7b0c8a6e-1e4f-4a55-9d0b-3c1f3f1d2a10"

ATTACKS: list[Attack] = [
    # NUL, in any spelling of the JSON media type, on every kind of route (3, 9)
    Attack("nul-push-upper-case", "POST", PUSH, 422, "validation", _nul_snapshot,
           content_type="APPLICATION/JSON", role="esis"),
    Attack("nul-push-with-charset", "POST", PUSH, 422, "validation", _nul_snapshot,
           content_type="Application/Json; charset=UTF-8", role="esis"),
    Attack("nul-patch-student-upper-case", "PATCH", STUDENT, 422, "validation",
           _json({"given_name": "Sa\u0000nne"}), content_type="APPLICATION/JSON"),
    Attack("nul-post-group-upper-case", "POST", "/api/v1/schools/{school}/groups", 422,
           "validation", _json({"name": "G\u0000"}), content_type="APPLICATION/JSON"),
    Attack("nul-patch-school-upper-case", "PATCH", "/api/v1/schools/{school}", 422,
           "validation", _json({"name": "School\u0000"}), content_type="APPLICATION/JSON",
           role="operator"),
    Attack("nul-merge-patch-json", "PATCH", STUDENT, 422, "validation",
           _json({"given_name": "Sa\u0000nne"}), content_type="application/merge-patch+json"),
    Attack("lone-surrogate-push", "POST", PUSH, 422, "validation",
           lambda _t: json.dumps(school_snapshot(students=1)).encode().replace(
               b'"Groep 5a"', b'"Groep \\ud800"', 1), role="esis"),
    # tampered cursors (7)
    Attack("cursor-naive-time-int-id", "GET",
           STUDENTS + "?cursor=" + _cursor(["2026-01-01T00:00:00", 123]), 422, "validation"),
    Attack("cursor-time-overflow", "GET",
           STUDENTS + "?cursor=" + _cursor(["0001-01-01T00:00:00+23:59", UUID]), 422,
           "validation"),
    Attack("cursor-runs-time-overflow", "GET",
           RUNS + "?cursor=" + _cursor(["0001-01-01T00:00:00+23:59", UUID]), 422, "validation"),
    Attack("cursor-runs-naive-time", "GET",
           RUNS + "?cursor=" + _cursor(["2026-01-01T00:00:00", 123]), 422, "validation"),
    Attack("feed-after-beyond-bigint", "GET",
           "/api/v1/schools/{school}/events?after=" + _cursor(9223372036854775808), 422,
           "validation"),
    Attack("schools-cursor-with-nul", "GET", "/api/v1/schools?cursor=" + _cursor("\u0000"),
           422, "validation", role="operator"),
    Attack("drift-cursor-a-list", "GET", "/api/v1/schools/{school}/drift?cursor="
           + _cursor([[[[1]]]]), 422, "validation"),
    # bodies that cost more than they hold (1, 7)
    Attack("json-5000-open-brackets", "POST", PUSH, 422, "validation",
           lambda _t: b"[" * 5000, role="esis"),
    Attack("json-300k-empty-groups", "POST", PUSH, 422, "validation",
           lambda _t: b'{"groups":[' + b",".join([b"{}"] * 300_000) + b"]}", role="esis"),
    Attack("json-a-million-values", "POST", PUSH, 422, "validation",
           lambda _t: b'{"groups":[' + b",".join([b"0"] * 1_000_000) + b"]}", role="esis"),
    Attack("json-nested-list-in-a-record", "POST", PUSH, 422, "validation",
           _snapshot_with(staff=[{"key": "X", "last_name": "Y", "groups": ["G"] * 5000}]),
           role="esis"),
    Attack("xml-100k-attributes", "POST", PUSH, 422, "validation", _many_attributes,
           content_type="application/xml", role="esis"),
    # an internal media type (7)
    Attack("uwlr-media-type-from-a-client", "POST", PUSH, 415, "unsupported-media-type",
           _snapshot_with(), content_type="application/vnd.uwlr.leerlinggegevens+xml",
           role="esis"),
    Attack("uwlr-media-type-upper-case", "POST", PUSH, 415, "unsupported-media-type",
           _snapshot_with(), content_type="Application/VND.UWLR.Leerlinggegevens+XML",
           role="esis"),
    # records (7)
    Attack("group-with-the-same-student-twice", "POST", "/api/v1/schools/{school}/groups",
           422, "validation", _same_student_twice),
    Attack("esis-key-longer-than-the-column", "PATCH", STUDENT, 422, "validation",
           _json({"esis_key": "K" * 300})),
    Attack("esis-key-empty", "PATCH", STUDENT, 422, "validation", _json({"esis_key": ""})),
    Attack("generated-at-without-offset", "POST", PUSH, 422, "validation",
           _snapshot_with(school={"brin": "12AB", "school_year": "2026-2027",
                                  "generated_at": "2026-11-27T16:55:00"}), role="esis"),
    # the ESIS connection (8)
    Attack("ca-pem-not-pem", "PUT", "/api/v1/schools/{school}/esis/connection", 422,
           "validation", _json({"url": "https://esis.example.nl/uwlr", "ca_pem": "not a pem",
                                "klantcode": "K", "klantnaam": "N"})),
]  # fmt: skip


@pytest.fixture
def target(client: TestClient, db: sessionmaker[Session]) -> Target:
    school = make_school(client, db)
    made = client.post(
        f"/api/v1/schools/{school.key}/students",
        json={"last_name": "Jansen", "given_name": "Sanne"},
        headers=auth(school.admin),
    )
    assert made.status_code == 201, made.text
    return Target(school, str(made.json()["id"]))


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_attack_gets_a_problem_of_ours(client: TestClient, target: Target, attack: Attack) -> None:
    school = target.school
    path = attack.path.format(school=school.key, student=target.student_id)
    secret = str(getattr(school, attack.role))
    headers = {**auth(secret), "content-type": attack.content_type, **attack.headers}
    body = attack.body(target) if attack.body is not None else None
    response = client.request(attack.method, path, content=body, headers=headers)
    assert response.status_code == attack.status, response.text[:500]
    problem = response.json()
    assert problem["type"] == f"/problems/{attack.problem}", problem
    assert len(response.content) < 64 * 1024  # the answer stays small, whatever was sent
    assert len(problem.get("errors", [])) <= 50


def test_attacks_cover_every_item_of_the_issue() -> None:
    names = {a.name for a in ATTACKS}
    assert len(names) == len(ATTACKS)
    for prefix in ("nul-", "cursor-", "json-", "xml-", "uwlr-", "group-", "esis-key-", "ca-pem"):
        assert any(n.startswith(prefix) for n in names), prefix
