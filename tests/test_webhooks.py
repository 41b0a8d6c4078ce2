"""Signed notifications: every change-feed event delivered to a real receiver on loopback,
verified with the official `standardwebhooks` package; in order, retried, disabled after
repeated failure, secrets rotatable; URLs guarded against server-side request forgery."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from app.config import Settings
from app.db import metadata
from app.worker import run as run_worker
from tests.factories import SchoolKeys, auth, make_school
from tests.merge_helpers import activate, rows
from tests.snapshots import school_snapshot
from tests.webhook_receiver import Receiver, receiver


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with receiver() as r:
        yield r


def _fast(settings: Settings, **overrides: Any) -> Settings:
    return settings.model_copy(update={"webhook_backoff_seconds": 0.0, **overrides})


def _pass(settings: Settings) -> None:
    """One pass of the embedded worker (the SQLite loop; on PostgreSQL the same function runs
    as procrastinate's periodic `deliver_webhooks` task)."""
    run_worker(settings, stop=threading.Event(), once=True)


def _register(client: TestClient, school: SchoolKeys, url: str) -> dict[str, Any]:
    response = client.post(
        f"/api/v1/schools/{school.key}/webhooks", json={"url": url}, headers=auth(school.admin)
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _verify(secret: str, received: Any) -> dict[str, Any]:
    payload: dict[str, Any] = Webhook(secret).verify(received.body.decode(), received.headers)
    return payload


def test_every_event_is_delivered_signed_and_in_order(
    client: TestClient, db: sessionmaker[Session], settings: Settings, hook: Receiver
) -> None:
    school = make_school(client, db)
    made = _register(client, school, hook.url)
    assert made["secret"].startswith("whsec_")
    stored = rows(db, "webhook_endpoint")[0]
    assert made["secret"].encode() not in stored["secret_encrypted"]
    listed = client.get(f"/api/v1/schools/{school.key}/webhooks", headers=auth(school.admin))
    assert "secret" not in listed.json()["items"][0]
    activate(client, school, school_snapshot())
    total = max(e["seq"] for e in rows(db, "event"))
    for _ in range(5):
        _pass(settings)
    payloads = [_verify(made["secret"], r) for r in hook.requests]
    seqs = [p["data"]["seq"] for p in payloads]
    first = payloads[0]
    assert (first["type"], first["data"]["entity_id"]) == ("webhook_endpoint.created", made["id"])
    assert seqs == list(range(seqs[0], total + 1))
    assert len({r.headers["webhook-id"] for r in hook.requests}) == len(seqs)
    assert all(p["data"]["school"] == school.key for p in payloads)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 44).verify(
            hook.requests[0].body.decode(), hook.requests[0].headers
        )
    shown = client.get(
        f"/api/v1/schools/{school.key}/webhooks/{made['id']}", headers=auth(school.admin)
    ).json()
    assert shown["delivered_seq"] == total and shown["enabled"] is True
    log = client.get(
        f"/api/v1/schools/{school.key}/webhooks/{made['id']}/deliveries",
        params={"limit": 5},
        headers=auth(school.admin),
    ).json()
    assert [d["event_seq"] for d in log["items"]] == list(range(total, total - 5, -1))
    assert all(d["outcome"] == "delivered" and d["status_code"] == 200 for d in log["items"])
    older = client.get(
        f"/api/v1/schools/{school.key}/webhooks/{made['id']}/deliveries",
        params={"limit": 5, "cursor": log["next_cursor"]},
        headers=auth(school.admin),
    ).json()
    assert older["items"][0]["event_seq"] == total - 5


def test_a_500_is_retried_with_the_same_id_and_order_is_kept(
    client: TestClient, db: sessionmaker[Session], settings: Settings, hook: Receiver
) -> None:
    school = make_school(client, db)
    made = _register(client, school, hook.url)
    client.patch(
        f"/api/v1/schools/{school.key}", json={"name": "De Regenboog"}, headers=auth(school.admin)
    )
    hook.script = [500, 500]
    fast = _fast(settings)
    for _ in range(4):
        _pass(fast)
    ids = [r.headers["webhook-id"] for r in hook.requests]
    assert ids[0] == ids[1] == ids[2]  # the same event three times, then the next
    assert [r.status for r in hook.requests[:3]] == [500, 500, 200]
    delivered = [_verify(made["secret"], r)["data"]["seq"] for r in hook.delivered()]
    assert delivered == sorted(delivered) and len(delivered) == len(set(delivered))
    log = client.get(
        f"/api/v1/schools/{school.key}/webhooks/{made['id']}/deliveries",
        headers=auth(school.admin),
    ).json()["items"]
    first_event = [d for d in log if d["message_id"] == ids[0]]
    assert sorted((d["attempt"], d["outcome"], d["status_code"]) for d in first_event) == [
        (1, "failed", 500),
        (2, "failed", 500),
        (3, "delivered", 200),
    ]


def test_backoff_waits_before_the_next_attempt(
    client: TestClient, db: sessionmaker[Session], settings: Settings, hook: Receiver
) -> None:
    school = make_school(client, db)
    made = _register(client, school, hook.url)
    hook.default = 503
    slow = settings.model_copy(update={"webhook_backoff_seconds": 3600.0})
    _pass(slow)
    _pass(slow)
    assert len(hook.requests) == 1  # the retry waits an hour
    shown = client.get(
        f"/api/v1/schools/{school.key}/webhooks/{made['id']}", headers=auth(school.admin)
    ).json()
    assert shown["failures"] == 1 and shown["next_attempt_at"] is not None


def test_an_endpoint_is_disabled_after_repeated_failure_and_an_event_says_so(
    client: TestClient, db: sessionmaker[Session], settings: Settings, hook: Receiver
) -> None:
    school = make_school(client, db)
    made = _register(client, school, hook.url)
    hook.default = 500
    fast = _fast(settings, webhook_max_failures=3)
    for _ in range(5):
        _pass(fast)
    assert len(hook.requests) == 3
    shown = client.get(
        f"/api/v1/schools/{school.key}/webhooks/{made['id']}", headers=auth(school.admin)
    ).json()
    assert shown["enabled"] is False and "3 consecutive" in shown["disabled_reason"]
    events = client.get(
        f"/api/v1/schools/{school.key}/events",
        params={"entity": "webhook_endpoint", "kind": "disabled"},
        headers=auth(school.reader),
    ).json()["items"]
    assert [e["entity_id"] for e in events] == [made["id"]]
    # Fixed receiver, enabled again: delivery resumes with the event that failed.
    hook.default = 200
    enabled = client.post(
        f"/api/v1/schools/{school.key}/webhooks/{made['id']}/enable", headers=auth(school.admin)
    )
    assert enabled.json()["enabled"] is True
    _pass(fast)
    seqs = [_verify(made["secret"], r)["data"]["seq"] for r in hook.delivered()]
    assert seqs[0] == json.loads(hook.requests[0].body)["data"]["seq"]
    assert seqs == sorted(seqs)


def test_secret_rotation_signs_with_both_secrets_during_the_grace(
    client: TestClient, db: sessionmaker[Session], settings: Settings, hook: Receiver
) -> None:
    school = make_school(client, db)
    made = _register(client, school, hook.url)
    _pass(settings)
    rotated = client.post(
        f"/api/v1/schools/{school.key}/webhooks/{made['id']}/secret", headers=auth(school.admin)
    )
    assert rotated.status_code == 200
    new = rotated.json()["secret"]
    assert new != made["secret"] and new.startswith("whsec_")
    _pass(settings)
    last = hook.requests[-1]
    assert _verify(new, last)["type"] == "webhook_endpoint.secret-rotated"
    assert _verify(made["secret"], last)  # the old one still verifies for 24 hours
    assert len(last.headers["webhook-signature"].split(" ")) == 2
    with db.begin() as session:
        t = metadata.tables["webhook_endpoint"]
        session.execute(update(t).values(previous_secret_until=None))
    client.patch(
        f"/api/v1/schools/{school.key}", json={"name": "Nieuw"}, headers=auth(school.admin)
    )
    _pass(settings)
    after = hook.requests[-1]
    assert _verify(new, after)
    with pytest.raises(WebhookVerificationError):
        _verify(made["secret"], after)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://8.8.8.8/hook", "https"),
        ("https://10.1.2.3/hook", "private"),
        ("https://192.168.1.10/hook", "private"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://[fe80::1]/hook", "link-local"),
        ("https://[::ffff:10.0.0.1]/hook", "private"),
        ("https://0.0.0.0/hook", "public"),
        ("https://user:pw@127.0.0.1/hook", "credentials"),
        ("ftp://127.0.0.1/hook", "validation"),
    ],
)
def test_private_and_link_local_addresses_are_refused(
    client: TestClient, db: sessionmaker[Session], url: str, why: str
) -> None:
    school = make_school(client, db)
    response = client.post(
        f"/api/v1/schools/{school.key}/webhooks", json={"url": url}, headers=auth(school.admin)
    )
    assert response.status_code == 422, response.text
    assert why in response.text
    assert rows(db, "webhook_endpoint") == []


def test_the_address_is_checked_again_at_delivery(
    client: TestClient, db: sessionmaker[Session], settings: Settings, hook: Receiver
) -> None:
    school = make_school(client, db)
    made = _register(client, school, hook.url)
    with db.begin() as session:  # what a DNS answer changed after registration amounts to
        t = metadata.tables["webhook_endpoint"]
        session.execute(update(t).values(url="https://10.0.0.7/hooks"))
    _pass(settings)
    assert hook.requests == []
    [attempt] = client.get(
        f"/api/v1/schools/{school.key}/webhooks/{made['id']}/deliveries",
        headers=auth(school.admin),
    ).json()["items"]
    assert attempt["outcome"] == "failed" and "private" in attempt["error"]


def test_only_admins_manage_webhooks_and_delete_stops_delivery(
    client: TestClient, db: sessionmaker[Session], settings: Settings, hook: Receiver
) -> None:
    school = make_school(client, db)
    url = f"/api/v1/schools/{school.key}/webhooks"
    assert client.post(url, json={"url": hook.url}, headers=auth(school.reader)).status_code == 403
    assert client.get(url, headers=auth(school.reader)).status_code == 403
    other = make_school(client, db, brin="99ZZ", operator=school.operator)
    made = _register(client, school, hook.url)
    assert (
        client.get(
            f"/api/v1/schools/{other.key}/webhooks/{made['id']}", headers=auth(other.admin)
        ).status_code
        == 404
    )
    deleted = client.delete(f"{url}/{made['id']}", headers=auth(school.admin))
    assert deleted.status_code == 204
    _pass(settings)
    assert hook.requests == []
    assert client.get(f"{url}/{made['id']}", headers=auth(school.admin)).status_code == 404
