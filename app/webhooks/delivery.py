"""Delivering the change feed to webhook endpoints: one event at a time, in order, signed.

Each endpoint has a cursor (`delivered_seq`). A worker leases the endpoint, sends the events
after its cursor one by one, and moves the cursor after each 2xx answer. A failure (no 2xx,
a timeout, a refused address) stops the endpoint there: the same event, with the same
`webhook-id`, is retried after an exponential backoff, so a receiver sees every event once
(or again, never out of order). After `webhook_max_failures` consecutive failures the
endpoint is disabled and an event says so. No network call happens inside a transaction.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
from dataclasses import dataclass

import httpx
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db import begin_write, utcnow
from app.events.models import Event
from app.events.service import Change, emit
from app.webhooks import repository
from app.webhooks.addresses import UnsafeUrl, resolve
from app.webhooks.models import WebhookDelivery, WebhookEndpoint
from app.webhooks.service import signing_secrets
from app.webhooks.signing import headers as signed

log = logging.getLogger("esis_sync.webhooks")

LEASE = dt.timedelta(minutes=5)
BATCH = 100  # events per endpoint per pass, so that one busy school does not starve others
MAX_BACKOFF = dt.timedelta(hours=6)


@dataclass(frozen=True)
class Attempt:
    ok: bool
    status_code: int | None
    error: str | None
    duration_ms: int


def message_id(school_id: uuid.UUID, seq: int) -> str:
    """Stable per event: the same on every retry and for every endpoint (receivers dedupe)."""
    return f"evt_{school_id.hex}_{seq}"


def payload(event: Event, school_key: str) -> bytes:
    """The Standard Webhooks payload shape: type, timestamp, data (the feed's event)."""
    data = {
        "school": school_key,
        "seq": event.seq,
        "occurred_at": event.occurred_at.isoformat().replace("+00:00", "Z"),
        "entity": event.entity,
        "entity_id": str(event.entity_id) if event.entity_id else None,
        "kind": event.kind,
        "changes": event.changes,
        "source": event.source,
        "actor": event.actor,
        "sync_run_id": str(event.sync_run_id) if event.sync_run_id else None,
    }
    body = {"type": f"{event.entity}.{event.kind}", "timestamp": data["occurred_at"], "data": data}
    return json.dumps(body, separators=(",", ":"), default=str).encode()


def _send(client: httpx.Client, url: str, headers: dict[str, str], body: bytes) -> Attempt:
    started = time.perf_counter()
    try:
        target = resolve(url)  # again now: the name may point elsewhere since registration
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        with client.stream(
            "POST",
            target.pinned_url,
            content=body,
            headers={**headers, "host": target.host_header},
            extensions=extensions,
        ) as response:
            status = response.status_code
        ms = round((time.perf_counter() - started) * 1000)
        if 200 <= status < 300:
            return Attempt(True, status, None, ms)
        return Attempt(False, status, f"the receiver answered {status}", ms)
    except UnsafeUrl as exc:
        return Attempt(False, None, f"refused: {exc}"[:300], 0)
    except httpx.HTTPError as exc:
        ms = round((time.perf_counter() - started) * 1000)
        return Attempt(False, None, f"{type(exc).__name__}: could not deliver"[:300], ms)


def backoff(settings: Settings, failures: int) -> dt.timedelta:
    seconds = settings.webhook_backoff_seconds * 2 ** min(failures - 1, 30)
    return min(dt.timedelta(seconds=seconds), MAX_BACKOFF)


def _record(
    sessions: sessionmaker[Session],
    settings: Settings,
    endpoint: WebhookEndpoint,
    event: Event,
    attempt: Attempt,
) -> bool:
    """Log the attempt and move the endpoint on; returns whether to go on with the next."""
    now = utcnow()
    with sessions() as session:
        begin_write(session)
        row = repository.endpoint_or_none(
            session=session, school_id=endpoint.school_id, endpoint_id=endpoint.id
        )
        if row is None or row.disabled_at is not None:
            session.commit()
            return False  # deleted or disabled meanwhile
        session.add(
            WebhookDelivery(
                school_id=row.school_id,
                endpoint_id=row.id,
                event_seq=event.seq,
                message_id=message_id(row.school_id, event.seq),
                attempt=row.failures + 1,
                attempted_at=now,
                outcome="delivered" if attempt.ok else "failed",
                status_code=attempt.status_code,
                error=attempt.error,
                duration_ms=attempt.duration_ms,
            )
        )
        if attempt.ok:
            row.delivered_seq, row.failures, row.next_attempt_at = event.seq, 0, None
        else:
            row.failures += 1
            row.next_attempt_at = now + backoff(settings, row.failures)
            if row.failures >= settings.webhook_max_failures:
                row.disabled_at = now
                row.disabled_reason = (
                    f"{row.failures} consecutive failed deliveries (last: {attempt.error})"
                )[:300]
                row.claimed_until = None
                emit(
                    session=session,
                    school_id=row.school_id,
                    source="system",
                    actor="webhooks",
                    changes=[
                        Change(
                            "webhook_endpoint",
                            row.id,
                            "disabled",
                            {"reason": row.disabled_reason, "event_seq": event.seq},
                        )
                    ],
                )
                log.warning(
                    "webhook endpoint disabled",
                    extra={"school_id": str(row.school_id), "endpoint_id": str(row.id)},
                )
        session.commit()
    return attempt.ok


def deliver_endpoint(
    *,
    sessions: sessionmaker[Session],
    settings: Settings,
    client: httpx.Client,
    school_id: uuid.UUID,
    endpoint_id: uuid.UUID,
) -> int:
    """Send what the endpoint has not received yet, in order; returns events delivered."""
    now = utcnow()
    with sessions() as session:
        begin_write(session)
        won = repository.claim(
            session=session,
            school_id=school_id,
            endpoint_id=endpoint_id,
            now=now,
            until=now + LEASE,
        )
        session.commit()
    if not won:
        return 0
    delivered = 0
    try:
        with sessions() as session:
            endpoint = repository.endpoint_one(
                session=session, school_id=school_id, endpoint_id=endpoint_id
            )
            school_key = repository.school_key(session=session, school_id=school_id)
            events = repository.pending_events(
                session=session, school_id=school_id, after=endpoint.delivered_seq, limit=BATCH
            )
            secrets = signing_secrets(settings, endpoint, now) if events else []
            session.expunge_all()
        for event in events:
            body = payload(event, school_key)
            stamp = int(time.time())
            headers = signed(
                secrets_=secrets,
                message_id=message_id(school_id, event.seq),
                timestamp=stamp,
                body=body,
            )
            attempt = _send(client, endpoint.url, headers, body)
            if not _record(sessions, settings, endpoint, event, attempt):
                break
            delivered += 1
    finally:
        with sessions() as session:
            begin_write(session)
            repository.release_claim(session=session, school_id=school_id, endpoint_id=endpoint_id)
            session.commit()
    return delivered


def deliver_pending(
    *, sessions: sessionmaker[Session], settings: Settings, client: httpx.Client | None = None
) -> int:
    """One pass over every endpoint that has something to send; returns events delivered."""
    with sessions() as session:
        endpoints = repository.due_endpoints(session=session, now=utcnow())
    if not endpoints:
        return 0
    own = client is None
    http = client or httpx.Client(
        timeout=httpx.Timeout(settings.webhook_timeout_seconds),
        follow_redirects=False,
        trust_env=False,
    )
    total = 0
    try:
        for school_id, endpoint_id in endpoints:
            total += deliver_endpoint(
                sessions=sessions,
                settings=settings,
                client=http,
                school_id=school_id,
                endpoint_id=endpoint_id,
            )
    finally:
        if own:
            http.close()
    return total
