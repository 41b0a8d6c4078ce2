"""A school with something to decide, made through the API: for the console's tests.

Works with the ASGI TestClient and with an httpx client of a real server alike.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from dataclasses import dataclass
from typing import Any

import httpx

from bench.server import free_port
from fake_esis.pki import make_ca, make_cert
from tests.snapshots import Snapshot, changed, find, school_snapshot

NEXT_YEAR = "2027-2028"
_stamp = itertools.count()


# The ASGI TestClient is an httpx.Client too.
Http = httpx.Client


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def _ok(response: Any, *statuses: int) -> Any:
    assert response.status_code in statuses, (response.status_code, response.text[:500])
    return response.json() if response.content else None


@dataclass
class Seeded:
    key: str
    operator: str
    admin: str
    reader: str
    esis: str
    deleted_student: str
    snapshot: Snapshot


def make_school(http: Http, operator: str, brin: str, name: str) -> dict[str, str]:
    made = _ok(
        http.post("/api/v1/schools", json={"brin": brin, "name": name}, headers=bearer(operator)),
        201,
    )
    keys = {"key": made["key"]}
    for role in ("admin", "reader", "esis"):
        keys[role] = _ok(
            http.post(
                f"/api/v1/schools/{made['key']}/api-keys",
                json={"role": role, "name": f"console {role}"},
                headers=bearer(operator),
            ),
            201,
        )["secret"]
    return keys


def push(http: Http, key: str, esis: str, snapshot: Snapshot) -> dict[str, Any]:
    moment = dt.datetime(2026, 11, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=next(_stamp))
    body = {**snapshot, "school": {**snapshot["school"], "generated_at": moment.isoformat()}}
    result: dict[str, Any] = _ok(
        http.post(f"/api/v1/schools/{key}/esis/snapshots", json=body, headers=bearer(esis)),
        200,
        201,
    )
    return result


def next_year(snap: Snapshot, leaving: int) -> Snapshot:
    """The next school year without the first `leaving` students (and their guardians)."""
    nxt = changed(snap)
    nxt["school"]["school_year"] = NEXT_YEAR
    gone = {s["key"] for s in nxt["students"][:leaving]}
    nxt["students"] = [s for s in nxt["students"] if s["key"] not in gone]
    for guardian in nxt["guardians"]:
        guardian["students"] = [g for g in guardian["students"] if g["student"] not in gone]
    nxt["guardians"] = [g for g in nxt["guardians"] if g["students"]]
    return nxt


def seed(http: Http, operator: str, brin: str = "12AB") -> Seeded:
    """Active school of 10 students with: drift on two guardians and a student, a student
    deleted locally, and a held year transition (6 of 10 students would leave)."""
    keys = make_school(http, operator, brin, "Basisschool De Regenboog")
    snap = school_snapshot(brin=brin, students=10)
    assert push(http, keys["key"], keys["esis"], snap)["status"] == "stored"
    _ok(
        http.post(f"/api/v1/schools/{keys['key']}/esis/activation", headers=bearer(keys["admin"])),
        201,
    )
    drifted = changed(snap)
    find(drifted, "guardians", "V0001")["email"] = "nieuw.ouder1@example.nl"
    find(drifted, "guardians", "V0002")["phone"] = "+31687654321"
    find(drifted, "students", "S0003")["last_name"] = "Jansen"
    assert push(http, keys["key"], keys["esis"], drifted)["status"] == "applied"
    students = _ok(
        http.get(f"/api/v1/schools/{keys['key']}/students?q=Kind10", headers=bearer(keys["admin"])),
        200,
    )["items"]
    doomed = students[0]["id"]
    _ok(
        http.delete(
            f"/api/v1/schools/{keys['key']}/students/{doomed}", headers=bearer(keys["admin"])
        ),
        204,
    )
    hold(http, keys["key"], keys["esis"], snap)
    return Seeded(operator=operator, deleted_student=doomed, snapshot=snap, **keys)


def hold(http: Http, key: str, esis: str, snap: Snapshot) -> None:
    run = push(http, key, esis, next_year(snap, leaving=6))
    assert run["status"] == "held", run


def failing_school(http: Http, operator: str, brin: str) -> dict[str, str]:
    """A school whose ESIS connection points at a closed port (every pull fails) and whose
    client certificate expires in ten days."""
    keys = make_school(http, operator, brin, "OBS De Vlieger")
    ca = make_ca()
    cert = make_cert(
        ca,
        "esis-sync client",
        server=False,
        not_after=dt.datetime.now(dt.UTC) + dt.timedelta(days=10),
    )
    _ok(
        http.put(
            f"/api/v1/schools/{keys['key']}/esis/connection",
            json={
                "url": f"https://127.0.0.1:{free_port()}/uwlr",
                "certificate": {"cert_pem": cert.cert.decode(), "key_pem": cert.key.decode()},
                "autorisatiesleutel": "test",
                "klantcode": "1",
                "klantnaam": "OBS De Vlieger",
            },
            headers=bearer(keys["admin"]),
        ),
        200,
    )
    run = _ok(
        http.post(f"/api/v1/schools/{keys['key']}/esis/pulls", headers=bearer(keys["admin"])), 201
    )
    assert run["status"] == "failed", run
    return keys


CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF field on the page"
    return found.group(1)
