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
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.coupling import health_repository as repo
from app.coupling.health_repository import SUCCESS
from app.coupling.health_schemas import CertificateHealth, HealthPublic
from app.coupling.models import EsisConnection
from app.db import begin_write, utcnow
from app.events.service import Change, emit
from app.sync.models import RunStatus, SyncRun

CERT_THRESHOLDS = (30, 7, 1)
MAX_BACKOFF_DAYS = 7


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


def health_of(*, session: Session, settings: Settings, school_id: uuid.UUID) -> Health:
    failures = repo.failures_since_success(session, [school_id]).get(school_id)
    last_ok = repo.last_pull_success(session=session, school_id=school_id)
    seen = repo.health_row(session=session, school_id=school_id)
    if seen is not None and seen.last_success_at is not None:
        last_ok = max(last_ok, seen.last_success_at) if last_ok else seen.last_success_at
    if failures is None:
        return Health(HealthState.HEALTHY, 0, last_ok, None, None, None)
    count, last_failure, _ = failures
    error = repo.last_pull_error(session=session, school_id=school_id)
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
    for school_id, (count, last_failure, _) in repo.failures_since_success(
        session, school_ids
    ).items():
        if count < threshold:
            continue
        next_on = last_failure.astimezone(settings.tz).date() + dt.timedelta(
            days=backoff_days(count, threshold)
        )
        if today < next_on:
            waiting.add(school_id)
    return waiting


def note_pull(
    *,
    sessions: sessionmaker[Session],
    settings: Settings,
    run: SyncRun,
    also: Callable[[Session], None] | None = None,
) -> None:
    """After a pull: an event when it puts the connection into quarantine or ends one.

    `also` is done in the same transaction, first: a worker ends the day's lease there
    (`pulls.pull(finish_on=...)`), one transaction a pull less. First, because it locks the
    connection's row and an event locks the school's: a PUT of the connection takes the two
    in that order too (its update, then its event), and the other order deadlocked with it."""
    threshold = settings.pull_quarantine_failures
    with sessions() as session:
        begin_write(session)
        if also is not None:
            also(session)
        if run.status == RunStatus.FAILED.value:
            found = repo.failures_since_success(session, [run.school_id]).get(run.school_id)
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
                            repo.connection_id(session=session, school_id=run.school_id),
                            "quarantined",
                            {
                                "consecutive_failures": found[0],
                                "next_scheduled_pull_in_days": backoff_days(found[0], threshold),
                            },
                        )
                    ],
                )
        elif run.status in SUCCESS:
            found = repo.failures_since_success(session, [run.school_id], exclude_run=run.id).get(
                run.school_id
            )
            repo.note_success(session=session, school_id=run.school_id, at=utcnow())
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
                            repo.connection_id(session=session, school_id=run.school_id),
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
        due = repo.certificates_ending_before(session=session, horizon=horizon)
    for school_id, connection_id, not_after in due:
        left = not_after - now
        threshold = min(t for t in CERT_THRESHOLDS if left <= dt.timedelta(days=t))
        with sessions() as session:
            begin_write(session)
            seen = repo.health_row_to_write(session=session, school_id=school_id)
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
