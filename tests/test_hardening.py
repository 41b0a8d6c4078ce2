"""Issue 13's cases about state: signed replays, stale snapshots, national ids, the budget of
refused bodies, readiness, recovery within the grace, webhook timestamps (checked with the
official `standardwebhooks` library), pulls into the operator's network, 500s."""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import LargeBinary, String, Text, func, select
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks import Webhook

from app.config import Settings
from app.coupling.receive import recover_interrupted
from app.coupling.signing import sign
from app.db import metadata
from app.esis import uwlr
from app.main import create_app
from app.sync.models import Snapshot, SyncRun
from fake_esis.server import DEFAULT_AUTORISATIE, FakeEsisKit, soap_answer
from tests.factories import SchoolKeys, auth, make_school
from tests.merge_helpers import activate, push, rows
from tests.snapshots import changed, school_snapshot

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "edexml" / "guardians-2.1.xml"
PUSH = "/api/v1/schools/{}/esis/snapshots"


def _push_raw(
    client: TestClient, school: SchoolKeys, body: bytes, ctype: str, **headers: str
) -> dict[str, object]:
    response = client.post(
        PUSH.format(school.key),
        content=body,
        headers={**auth(school.esis), "content-type": ctype, **headers},
    )
    return {**response.json(), "http": response.status_code}


def _secret(client: TestClient, school: SchoolKeys) -> str:
    made = client.post(
        f"/api/v1/schools/{school.key}/esis/signing-secrets", headers=auth(school.admin)
    )
    assert made.status_code == 201, made.text
    return str(made.json()["secret"])


def _signed(secret: str, body: bytes, stamp: str, msg_id: str = "msg_1") -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": stamp,
        "webhook-signature": sign(secret, msg_id, int(stamp), body),
    }


# --- 4: replays and out-of-order delivery ---------------------------------------------------


def test_a_captured_signed_push_with_an_added_idempotency_key_is_a_replay(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db)
    secret = _secret(client, school)
    old = json.dumps(school_snapshot(students=2)).encode()
    headers = _signed(secret, old, str(int(time.time())), msg_id="msg_old")
    first = _push_raw(client, school, old, "application/json", **headers)
    assert first["http"] == 201
    newer = school_snapshot(students=3)
    newer_body = json.dumps(newer).encode()
    signed = _signed(secret, newer_body, str(int(time.time())), msg_id="msg_new")
    assert _push_raw(client, school, newer_body, "application/json", **signed)["http"] == 201
    replay = _push_raw(
        client, school, old, "application/json", **headers, **{"idempotency-key": "x"}
    )
    assert replay["http"] == 200 and replay["id"] == first["id"]
    assert len(rows(db, "sync_run")) == 2


def test_a_snapshot_generated_before_the_last_applied_is_refused(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db)
    base = school_snapshot(students=3)
    activate(client, school, base)  # generated at 2026-11-01 plus a few minutes
    stale = changed(base)
    stale["school"]["generated_at"] = "2026-10-01T12:00:00+02:00"
    stale["students"][0]["last_name"] = "Ouder"
    response = client.post(PUSH.format(school.key), json=stale, headers=auth(school.esis))
    assert response.status_code == 409, response.text
    assert response.json()["type"] == "/problems/stale-snapshot"
    assert "before the one already received" in response.json()["detail"]
    assert "Ouder" not in {s["last_name"] for s in rows(db, "student")}  # nothing rolled back
    assert push(client, school, base).status_code == 201  # a newer one is applied


def test_an_edexml_snapshot_older_than_the_last_is_refused(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db)
    body = FIXTURE.read_bytes()
    assert _push_raw(client, school, body, "application/xml")["http"] == 201
    older = body.replace(b"2026-11-27T16:55:00", b"2026-11-20T16:55:00").replace(
        b"<roepnaam>Sanne</roepnaam>", b"<roepnaam>Suus</roepnaam>"
    )
    refused = _push_raw(client, school, older, "application/xml")
    assert refused["http"] == 409 and refused["type"] == "/problems/stale-snapshot"


# --- 6: national ids and refused bodies -----------------------------------------------------


def _stored_anywhere(db: sessionmaker[Session], value: str) -> list[str]:
    """Every table and text or binary column holding `value`."""
    found = []
    with db() as session:
        for table in metadata.sorted_tables:
            for column in table.columns:
                if not isinstance(column.type, String | Text | LargeBinary):
                    continue
                raw = value.encode() if isinstance(column.type, LargeBinary) else value
                pattern = column.contains(raw)  # LIKE: on text and on bytes, both databases
                hits = session.scalar(select(func.count()).select_from(table).where(pattern))
                if hits:
                    found.append(f"{table.name}.{column.name}")
    return found


def test_no_national_id_is_stored_from_json_or_edexml(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db)
    snap = school_snapshot(students=2)
    snap["students"][0]["bsn"] = "999990019"
    snap["school"]["brin"] = "99ZZ"  # another school's: refused whole, and kept for a while
    assert _push_raw(client, school, json.dumps(snap).encode(), "application/json")["http"] == 422
    assert _push_raw(client, school, FIXTURE.read_bytes(), "application/xml")["http"] == 201
    for value in ("999990019", "123456782", "987654321", "111222333"):
        assert _stored_anywhere(db, value) == [], value
    assert rows(db, "snapshot")  # the bodies are there, without the ids


@pytest.fixture
def small_budget_client(settings: Settings, db: sessionmaker[Session]) -> Iterator[TestClient]:
    tight = settings.model_copy(update={"refused_body_budget_bytes": 300_000})
    application: FastAPI = create_app(tight)
    with TestClient(application, raise_server_exceptions=False) as test_client:
        yield test_client
    application.state.engine.dispose()


def test_refused_bodies_stay_within_the_schools_budget(
    small_budget_client: TestClient, db: sessionmaker[Session]
) -> None:
    client = small_budget_client
    school = make_school(client, db)
    for i in range(5):
        snap = school_snapshot(students=2)
        snap["school"]["brin"] = "99ZZ"  # another school's: refused
        snap["padding"] = f"{i}" + "x" * 200_000
        refused = _push_raw(client, school, json.dumps(snap).encode(), "application/json")
        assert refused["http"] == 422
    with db() as session:
        kept = session.scalar(select(func.sum(func.length(Snapshot.body))))
        runs = session.scalar(select(func.count()).select_from(SyncRun))
    assert kept is not None and kept <= 300_000
    assert runs == 5  # every refusal is still on record


# --- 3: readiness never from a snapshot that cannot be applied ------------------------------


def test_r1_a_refused_snapshot_never_makes_a_school_ready(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db)
    snap = school_snapshot(students=2)
    body = json.dumps(snap).encode().replace(b'"Groep 5a"', b'"Groep\\u00005a"')
    assert _push_raw(client, school, body, "APPLICATION/JSON")["http"] == 422
    ready = client.get(f"/api/v1/schools/{school.key}/esis/readiness", headers=auth(school.admin))
    assert ready.json()["ready"] is False
    assert rows(db, "snapshot") == []  # refused at the edge: nothing stored


# --- 9: recovery, timestamps ------------------------------------------------------------------


def test_recovery_finishes_a_run_younger_than_its_grace(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db)
    school_id = uuid.UUID(str(rows(db, "school")[0]["id"]))
    body = json.dumps(school_snapshot(students=2)).encode()
    with db() as session:
        snapshot = Snapshot(
            school_id=school_id,
            origin="push",
            content_type="application/json",
            body=body,
            body_sha256="0" * 64,
        )
        session.add(snapshot)
        session.flush()
        session.add(SyncRun(school_id=school_id, snapshot_id=snapshot.id, origin="push"))
        session.commit()
    # As a process restarted within the grace would: the run is 0 s old.
    recover_interrupted(sessions=db, today=dt.date(2026, 12, 1))
    assert [r["status"] for r in rows(db, "sync_run")] == ["stored"]
    assert school.key


@pytest.mark.parametrize("stamp", ["1796108658.0", "0001796108659", "1796_108659", " 17961086"])
def test_webhook_timestamps_other_than_digits_are_refused(
    client: TestClient, db: sessionmaker[Session], stamp: str
) -> None:
    school = make_school(client, db)
    secret = _secret(client, school)
    body = json.dumps(school_snapshot(students=1)).encode()
    msg_id = "msg_ts"
    signature = sign(secret, msg_id, int(float(stamp.replace("_", ""))), body)
    headers = {"webhook-id": msg_id, "webhook-timestamp": stamp, "webhook-signature": signature}
    refused = _push_raw(client, school, body, "application/json", **headers)
    assert refused["http"] == 401 and "digits only" in str(refused["detail"])


def test_what_we_accept_the_official_library_verifies_too(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db)
    secret = _secret(client, school)
    body = json.dumps(school_snapshot(students=1)).encode()
    stamp = str(int(time.time()))
    headers = _signed(secret, body, stamp, msg_id="msg_lib")
    Webhook(secret).verify(body.decode(), headers)  # raises when it disagrees
    assert _push_raw(client, school, body, "application/json", **headers)["http"] == 201


# --- 8: pulls into the operator's network ---------------------------------------------------


@pytest.fixture
def public_only_client(settings: Settings, db: sessionmaker[Session]) -> Iterator[TestClient]:
    strict = settings.model_copy(update={"allow_private_esis_hosts": False})
    application: FastAPI = create_app(strict)
    with TestClient(application, raise_server_exceptions=False) as test_client:
        yield test_client
    application.state.engine.dispose()


def test_a_pull_to_a_loopback_host_is_refused_unless_allowed(
    public_only_client: TestClient, db: sessionmaker[Session], kit: FakeEsisKit
) -> None:
    client = public_only_client
    school = make_school(client, db)
    with kit.serve() as esis:
        esis.script("12AB", "00", answer=soap_answer(FIXTURE.read_bytes()))
        connected = client.put(
            f"/api/v1/schools/{school.key}/esis/connection",
            json={
                "url": esis.url,
                "certificate": {
                    "cert_pem": kit.client.cert.decode(),
                    "key_pem": kit.client.key.decode(),
                },
                "ca_pem": kit.ca.cert.decode(),
                **DEFAULT_AUTORISATIE,
            },
            headers=auth(school.admin),
        )
        assert connected.status_code == 200, connected.text
        run = client.post(
            f"/api/v1/schools/{school.key}/esis/pulls", headers=auth(school.admin)
        ).json()
        assert esis.served("12AB") == 0
    assert run["status"] == "failed"
    assert run["error"]["extra"]["kind"] == "address", run


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "10.1.2.3", "169.254.169.254", "::1", "::ffff:192.168.1.1", "0.0.0.0"]
)
def test_non_public_addresses_are_not_public(address: str) -> None:
    assert not uwlr.is_public(address)


def test_closed_and_open_non_tls_ports_fail_alike(kit: FakeEsisKit) -> None:
    """A school admin must not learn from a run which ports of a host are open."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    open_port = listener.getsockname()[1]

    def answer_plain_text() -> None:
        with suppress_os_error():
            conn, _ = listener.accept()
            conn.recv(1024)
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            conn.close()

    threading.Thread(target=answer_plain_text, daemon=True).start()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    errors = []
    with kit.serve() as esis:
        for port in (open_port, closed_port):
            conn = kit.connection(esis)
            conn.url = f"https://127.0.0.1:{port}/uwlr"
            with pytest.raises(uwlr.UwlrError) as caught:
                uwlr.fetch(conn=conn, brin="12AB", branch="00", attempts=1)
            errors.append((caught.value.kind, caught.value.detail))
    listener.close()
    assert errors[0] == errors[1] == ("connect", "could not connect to the ESIS host over TLS")


class suppress_os_error:  # noqa: N801 - used like contextlib.suppress
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, value: object, tb: object) -> bool:
        return isinstance(value, OSError)


# --- 7: a 500 that still happens -----------------------------------------------------------


def test_a_500_closes_the_connection_and_logs_only_the_type(
    settings: Settings, db: sessionmaker[Session], capfd: pytest.CaptureFixture[str]
) -> None:
    application = create_app(settings)

    def boom() -> None:
        raise RuntimeError("Sanne de Jansen, 2017-03-14")

    application.add_api_route("/boom", boom)
    with TestClient(application, raise_server_exceptions=False) as test_client:
        response = test_client.get("/boom")
    application.state.engine.dispose()
    assert response.status_code == 500
    assert response.headers["connection"] == "close"
    assert response.json()["type"] == "/problems/internal"
    logged = capfd.readouterr().err
    assert "RuntimeError" in logged and "Sanne" not in logged and "2017-03-14" not in logged
