"""Reads the console needs beyond what the API's services answer: health across schools,
names for drift, the records a run touched. Set-based: one query per figure, not per school."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from app.coupling.health_repository import SUCCESS
from app.db import metadata, utcnow
from app.roster.views import display_name
from app.schools.models import School
from app.sync.drift import TABLE_OF
from app.sync.models import RunStatus
from app.year_transition.models import TransitionStatus

CERT_WARNING = dt.timedelta(days=30)
# A pull ESIS answered ends a run of failures, as the connection health counts it (one list).
OK_STATUSES = SUCCESS


@dataclass(frozen=True)
class Health:
    school: School
    last_success: dt.datetime | None
    failing_pulls: int
    held: int
    open_drift: int
    cert_not_after: dt.datetime | None
    last_pulled_on: dt.date | None
    now: dt.datetime

    @property
    def age(self) -> dt.timedelta | None:
        return None if self.last_success is None else self.now - self.last_success

    @property
    def age_days(self) -> int | None:
        return None if self.age is None else self.age.days

    @property
    def cert_expiring(self) -> bool:
        return self.cert_not_after is not None and self.cert_not_after - self.now < CERT_WARNING

    @property
    def problems(self) -> int:
        return (self.failing_pulls > 0) + (self.held > 0) + self.cert_expiring


def _t(name: str) -> Any:
    return metadata.tables[name]


def health(*, session: Session, schools: list[School]) -> list[Health]:
    """Per school: last successful run, pulls failed since the last good one, held year
    transitions, open drift (R5), the ESIS certificate's expiry."""
    ids = [s.id for s in schools]
    if not ids:
        return []
    runs, drift, held, conn = (
        _t("sync_run"),
        _t("drift_item"),
        _t("year_transition"),
        _t("esis_connection"),
    )
    last_success: dict[uuid.UUID, dt.datetime] = dict(
        session.execute(
            select(runs.c.school_id, func.max(func.coalesce(runs.c.finished_at, runs.c.started_at)))
            .where(runs.c.school_id.in_(ids), runs.c.status == RunStatus.APPLIED.value)
            .group_by(runs.c.school_id)
        ).all()
    )
    good = runs.alias("good")
    last_good_pull = (
        select(func.max(good.c.started_at))
        .where(
            good.c.school_id == runs.c.school_id,
            good.c.origin == "pull",
            good.c.status.in_(OK_STATUSES),
        )
        .scalar_subquery()
    )
    failing: dict[uuid.UUID, int] = dict(
        session.execute(
            select(runs.c.school_id, func.count())
            .where(
                runs.c.school_id.in_(ids),
                runs.c.origin == "pull",
                runs.c.status == RunStatus.FAILED.value,
                or_(last_good_pull.is_(None), runs.c.started_at > last_good_pull),
            )
            .group_by(runs.c.school_id)
        ).all()
    )
    open_drift: dict[uuid.UUID, int] = dict(
        session.execute(
            select(drift.c.school_id, func.count())
            .where(drift.c.school_id.in_(ids))
            .group_by(drift.c.school_id)
        ).all()
    )
    held_count: dict[uuid.UUID, int] = dict(
        session.execute(
            select(held.c.school_id, func.count())
            .where(held.c.school_id.in_(ids), held.c.status == TransitionStatus.HELD.value)
            .group_by(held.c.school_id)
        ).all()
    )
    certs = {
        row.school_id: row
        for row in session.execute(
            select(conn.c.school_id, conn.c.cert_not_after, conn.c.last_pulled_on).where(
                conn.c.school_id.in_(ids)
            )
        )
    }
    now = utcnow()
    out = []
    for school in schools:
        cert = certs.get(school.id)
        success = last_success.get(school.id)
        if success is not None and success.tzinfo is None:  # SQLite's aggregate is naive
            success = success.replace(tzinfo=dt.UTC)
        out.append(
            Health(
                school=school,
                last_success=success,
                failing_pulls=int(failing.get(school.id, 0)),
                held=int(held_count.get(school.id, 0)),
                open_drift=int(open_drift.get(school.id, 0)),
                cert_not_after=cert.cert_not_after if cert else None,
                last_pulled_on=cert.last_pulled_on if cert else None,
                now=now,
            )
        )
    return out


def record_names(
    *, session: Session, school_id: uuid.UUID, records: Iterable[tuple[str, uuid.UUID]]
) -> dict[tuple[str, uuid.UUID], str]:
    """Display names of drift's records, one query per kind of record."""
    wanted: dict[str, set[uuid.UUID]] = {}
    for entity, record_id in records:
        wanted.setdefault(entity, set()).add(record_id)
    names: dict[tuple[str, uuid.UUID], str] = {}
    for entity, ids in wanted.items():
        t = _t(TABLE_OF[entity])
        if entity == "student_guardian":
            s, g = _t("student"), _t("guardian")
            rows = session.execute(
                select(t.c.id, s, g.c.last_name.label("g_last"))
                .join(s, and_(s.c.school_id == t.c.school_id, s.c.id == t.c.student_id))
                .join(g, and_(g.c.school_id == t.c.school_id, g.c.id == t.c.guardian_id))
                .where(t.c.school_id == school_id, t.c.id.in_(ids))
            ).mappings()
            for r in rows:
                names[(entity, r["id"])] = f"{display_name(dict(r))} - {r['g_last']}"
            continue
        rows = session.execute(
            select(t).where(t.c.school_id == school_id, t.c.id.in_(ids))
        ).mappings()
        for r in rows:
            names[(entity, r["id"])] = r["name"] if entity == "group" else display_name(dict(r))
    return names


def run_events(
    *, session: Session, school_id: uuid.UUID, run_id: uuid.UUID, limit: int
) -> tuple[int, list[dict[str, Any]]]:
    """How many records a run touched, and the first `limit` of its changes."""
    e = _t("event")
    where = (e.c.school_id == school_id, e.c.sync_run_id == run_id)
    count = session.scalar(select(func.count()).select_from(e).where(*where)) or 0
    rows = session.execute(
        select(e.c.seq, e.c.entity, e.c.entity_id, e.c.kind, e.c.changes)
        .where(*where)
        .order_by(e.c.seq)
        .limit(limit)
    ).mappings()
    return int(count), [dict(r) for r in rows]
