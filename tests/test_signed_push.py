"""Signed pushes (Standard Webhooks 1.0): refused unsigned, wrongly signed or stale; replays
answered with the first run; several secrets at once for rotation."""

from __future__ import annotations

import json
import time
import uuid

from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy.orm import Session, sessionmaker

from app.coupling.signing import sign
from tests.factories import SchoolKeys, auth, make_school
from tests.merge_helpers import rows
from tests.snapshots import school_snapshot


def _secret(client: TestClient, school: SchoolKeys) -> dict[str, str]:
    made = client.post(
        f"/api/v1/schools/{school.key}/esis/signing-secrets", headers=auth(school.admin)
    )
    assert made.status_code == 201, made.text
    body: dict[str, str] = made.json()
    return body


def _push(client: TestClient, school: SchoolKeys, body: bytes, headers: dict[str, str]) -> Response:
    response: Response = client.post(
        f"/api/v1/schools/{school.key}/esis/snapshots",
        content=body,
        headers={**auth(school.esis), "content-type": "application/json", **headers},
    )
    return response


def _signed(
    secret: str, body: bytes, *, msg_id: str | None = None, at: int | None = None
) -> dict[str, str]:
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    stamp = at if at is not None else int(time.time())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(secret, msg_id, stamp, body),
    }


def test_signed_pushes(client: TestClient, db: sessionmaker[Session]) -> None:
    school = make_school(client, db)
    body = json.dumps(school_snapshot(students=2)).encode()
    assert _push(client, school, body, {}).status_code == 201  # no secret yet: no signature
    secret = _secret(client, school)
    assert secret["secret"].startswith("whsec_")
    listed = client.get(
        f"/api/v1/schools/{school.key}/esis/signing-secrets", headers=auth(school.admin)
    ).text
    assert secret["secret"] not in listed
    assert all(secret["secret"].encode() not in r["encrypted"] for r in rows(db, "signing_secret"))

    other = json.dumps(school_snapshot(students=3)).encode()
    unsigned = _push(client, school, other, {})
    assert unsigned.status_code == 401
    assert "requires signed pushes" in unsigned.json()["detail"]
    wrong = _push(client, school, other, _signed("whsec_" + "A" * 44, other))
    assert wrong.status_code == 401
    assert "does not match" in wrong.json()["detail"]
    stale = _push(
        client, school, other, _signed(secret["secret"], other, at=int(time.time()) - 600)
    )
    assert stale.status_code == 401
    assert "tolerance" in stale.json()["detail"]
    tampered = _signed(secret["secret"], other)
    assert _push(client, school, other + b" ", tampered).status_code == 401
    assert len(rows(db, "snapshot")) == 1  # refused pushes are not stored

    headers = _signed(secret["secret"], other, msg_id="msg_1")
    first = _push(client, school, other, headers)
    assert first.status_code == 201, first.text
    replay = _push(client, school, other, headers)
    assert replay.status_code == 200
    assert replay.json()["id"] == first.json()["id"]

    rotated = _secret(client, school)
    third = json.dumps(school_snapshot(students=4)).encode()
    assert _push(client, school, third, _signed(rotated["secret"], third)).status_code == 201
    revoked = client.delete(
        f"/api/v1/schools/{school.key}/esis/signing-secrets/{secret['id']}",
        headers=auth(school.admin),
    )
    assert revoked.status_code == 204
    fourth = json.dumps(school_snapshot(students=5)).encode()
    assert _push(client, school, fourth, _signed(secret["secret"], fourth)).status_code == 401
    assert _push(client, school, fourth, _signed(rotated["secret"], fourth)).status_code == 201
