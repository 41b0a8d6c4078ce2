"""Connection health: a school's state derived from its pull history, quarantine, and
warnings before the client certificate expires.

- healthy: the last pull succeeded (or there was none yet); failing: the last pulls failed,
  fewer than `pull_quarantine_failures` in a row; quarantined: that many or more.
- Quarantine (as Entra provisioning does): the scheduled pull backs off, every 2, then 4, then
  7 days after the last failure, so a broken connection does not knock on ESIS every day. A
  manual pull still runs; any successful pull ends the quarantine. Entering and leaving it
  are events.
- The certificate: an event when it expires within 30, 7 and 1 days (each once per
  certificate); `/metrics` shows the seconds left.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import func
from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import col, select

from app.config import Settings
from app.coupling.health_models import ConnectionHealth
from app.coupling.health_schemas import CertificateHealth, HealthPublic
from app.coupling.models import EsisConnection
from app.db import begin_write, utcnow
from app.events.service import Change, emit
from app.sync.models import RunStatus, SyncRun

CERT_THRESHOLDS = (30, 7, 1)
MAX_BACKOFF_DAYS = 7
SUCCESS = (
    RunStatus.APPLIED.value,
    RunStatus.STORED.value,
    RunStatus.HELD.value,
    RunStatus.NO_CHANGES.value,  # geenwijzigingen: ESIS answered, nothing new
    RunStatus.REJECTED.value,  # held by the change guard, then rejected: ESIS did answer
)


class HealthState(StrEnum):
    HEALTHY = "healthy"
    FAILING = "failing"
    QUARANTINED = "quarantined"


@dataclass(frozen=True)
class Health:
    state: HealthState
    consecutive_failures: int
    last_success_at: dt.datetime | None
    last_failure_at: dt.datetime | None
    last_error: dict[str, Any] | None
    next_scheduled_pull_on: dt.date | None  # set while quarantined


def backoff_days(consecutive: int, threshold: int) -> int:
    """2, 4, then 7 days between scheduled pulls once quarantined."""
    return min(int(2 ** max(1, consecutive - threshold + 1)), MAX_BACKOFF_DAYS)


def _failures_since_success(
    session: Session, school_ids: list[uuid.UUID], exclude_run: uuid.UUID | None = None
) -> dict[uuid.UUID, tuple[int, dt.datetime, dt.datetime | None]]:
    """Per school: failed pulls since its last success, the latest failure, that success."""
    ok = (
        select(col(SyncRun.school_id), func.max(col(SyncRun.started_at)).label("at"))
        .where(
            col(SyncRun.origin) == "pull",
            col(SyncRun.status).in_(SUCCESS),
            col(SyncRun.school_id).in_(school_ids),
            *([col(SyncRun.id) != exclude_run] if exclude_run is not None else []),
        )
        .group_by(col(SyncRun.school_id))
        .subquery()
    )
    fetched = col(ConnectionHealth.last_success_at)
    query = (
        select(
            col(SyncRun.school_id),
            func.count(),
            func.max(col(SyncRun.started_at)),
            func.max(ok.c.at),
        )
        .outerjoin(ok, ok.c.school_id == col(SyncRun.school_id))
        .outerjoin(ConnectionHealth, col(ConnectionHealth.school_id) == col(SyncRun.school_id))
        .where(
            col(SyncRun.origin) == "pull",
            col(SyncRun.status) == RunStatus.FAILED.value,
            col(SyncRun.school_id).in_(school_ids),
            (ok.c.at.is_(None)) | (col(SyncRun.started_at) > ok.c.at),
            fetched.is_(None) | (col(SyncRun.started_at) > fetched),
        )
        .group_by(col(SyncRun.school_id))
    )
    return {s: (int(n), last, success) for s, n, last, success in session.execute(query)}


def health_of(*, session: Session, settings: Settings, school_id: uuid.UUID) -> Health:
    failures = _failures_since_success(session, [school_id]).get(school_id)
    last_ok = session.scalar(
        select(func.max(col(SyncRun.started_at))).where(
            col(SyncRun.school_id) == school_id,
            col(SyncRun.origin) == "pull",
            col(SyncRun.status).in_(SUCCESS),
        )
    )
    seen = session.get(ConnectionHealth, school_id)
    if seen is not None and seen.last_success_at is not None:
        last_ok = max(last_ok, seen.last_success_at) if last_ok else seen.last_success_at
    if failures is None:
        return Health(HealthState.HEALTHY, 0, last_ok, None, None, None)
    count, last_failure, _ = failures
    error = session.scalar(
        select(SyncRun.error)
        .where(
            col(SyncRun.school_id) == school_id,
            col(SyncRun.origin) == "pull",
            col(SyncRun.status) == RunStatus.FAILED.value,
        )
        .order_by(col(SyncRun.started_at).desc())
        .limit(1)
    )
    threshold = settings.pull_quarantine_failures
    if count < threshold:
        return Health(HealthState.FAILING, count, last_ok, last_failure, error, None)
    next_on = last_failure.astimezone(settings.tz).date() + dt.timedelta(
        days=backoff_days(count, threshold)
    )
    return Health(HealthState.QUARANTINED, count, last_ok, last_failure, error, next_on)


def backed_off(
    *, session: Session, settings: Settings, school_ids: list[uuid.UUID], now: dt.datetime
) -> set[uuid.UUID]:
    """The quarantined schools whose scheduled pull must wait (one grouped query for all)."""
    if not school_ids:
        return set()
    threshold = settings.pull_quarantine_failures
    today = now.astimezone(settings.tz).date()
    waiting = set()
    for school_id, (count, last_failure, _) in _failures_since_success(session, school_ids).items():
        if count < threshold:
            continue
        next_on = last_failure.astimezone(settings.tz).date() + dt.timedelta(
            days=backoff_days(count, threshold)
        )
        if today < next_on:
            waiting.add(school_id)
    return waiting


def note_pull(*, sessions: sessionmaker[Session], settings: Settings, run: SyncRun) -> None:
    """After a pull: an event when it puts the connection into quarantine or ends one."""
    threshold = settings.pull_quarantine_failures
    with sessions() as session:
        begin_write(session)
        connection_id = session.scalar(
            select(EsisConnection.id).where(EsisConnection.school_id == run.school_id)
        )
        if run.status == RunStatus.FAILED.value:
            found = _failures_since_success(session, [run.school_id]).get(run.school_id)
            if found is not None and found[0] == threshold:
                emit(
                    session=session,
                    school_id=run.school_id,
                    source="system",
                    actor="health",
                    sync_run_id=run.id,
                    changes=[
                        Change(
                            "esis_connection",
                            connection_id,
                            "quarantined",
                            {
                                "consecutive_failures": found[0],
                                "next_scheduled_pull_in_days": backoff_days(found[0], threshold),
                            },
                        )
                    ],
                )
        elif run.status in SUCCESS:
            found = _failures_since_success(session, [run.school_id], exclude_run=run.id).get(
                run.school_id
            )
            seen = session.get(ConnectionHealth, run.school_id)
            if seen is None:
                seen = ConnectionHealth(school_id=run.school_id)
                session.add(seen)
            seen.last_success_at = utcnow()
            if found is not None and found[0] >= threshold:
                emit(
                    session=session,
                    school_id=run.school_id,
                    source="system",
                    actor="health",
                    sync_run_id=run.id,
                    changes=[
                        Change(
                            "esis_connection",
                            connection_id,
                            "quarantine-ended",
                            {"consecutive_failures": found[0]},
                        )
                    ],
                )
        session.commit()


def check_certificates(*, sessions: sessionmaker[Session], now: dt.datetime | None = None) -> int:
    """Announce each certificate threshold once (30, 7, 1 days); returns events written."""
    now = now or utcnow()
    written = 0
    with sessions() as session:
        horizon = now + dt.timedelta(days=max(CERT_THRESHOLDS))
        due = list(
            session.execute(
                select(
                    EsisConnection.school_id, EsisConnection.id, EsisConnection.cert_not_after
                ).where(col(EsisConnection.cert_not_after) <= horizon)
            )
        )
    for school_id, connection_id, not_after in due:
        left = not_after - now
        threshold = min(t for t in CERT_THRESHOLDS if left <= dt.timedelta(days=t))
        with sessions() as session:
            begin_write(session)
            seen = session.get(ConnectionHealth, school_id)
            if seen is None:
                seen = ConnectionHealth(school_id=school_id)
                session.add(seen)
            if seen.cert_not_after != not_after:  # a new certificate: warn afresh
                seen.cert_not_after, seen.cert_warned_days = not_after, None
            if seen.cert_warned_days is not None and seen.cert_warned_days <= threshold:
                session.commit()
                continue
            seen.cert_warned_days = threshold
            emit(
                session=session,
                school_id=school_id,
                source="system",
                actor="health",
                changes=[
                    Change(
                        "esis_connection",
                        connection_id,
                        "certificate-expiring",
                        {
                            "within_days": threshold,
                            "days_left": round(left.total_seconds() / 86400, 1),
                            "not_after": not_after.isoformat(),
                        },
                    )
                ],
            )
            session.commit()
            written += 1
    return written


def health_public(
    *, session: Session, settings: Settings, connection: EsisConnection
) -> HealthPublic:
    found = health_of(session=session, settings=settings, school_id=connection.school_id)
    left = connection.cert_not_after - utcnow()
    within = [t for t in CERT_THRESHOLDS if left.total_seconds() <= t * 86400]
    return HealthPublic(
        state=found.state.value,
        consecutive_failures=found.consecutive_failures,
        last_success_at=found.last_success_at,
        last_failure_at=found.last_failure_at,
        last_error=found.last_error,
        next_scheduled_pull_on=found.next_scheduled_pull_on,
        certificate=CertificateHealth(
            not_after=connection.cert_not_after,
            days_left=round(left.total_seconds() / 86400, 1),
            expiring_within_days=min(within) if within else None,
        ),
    )
