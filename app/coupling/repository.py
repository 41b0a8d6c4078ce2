"""The coupling's queries: signing secrets, the ESIS connection and its daily-pull lease,
stored EDEXml files, the live rows the export writes, and a snapshot's receipt (replays, the
rate, recovery and the budget of refused bodies; the way itself is `receive.py`), and the
runs the change guard held (`held.py`)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, cast

from sqlalchemy import exists, func, or_, text, update
from sqlalchemy.orm import QueryableAttribute, Session, defer
from sqlmodel import col, select

import app.roster.models  # noqa: F401  (the roster's tables in app.db.metadata, for the export)
from app.coupling.models import EsisConnection, SigningSecret
from app.db import metadata
from app.schools.models import CouplingState, School
from app.sync.models import RunStatus, Snapshot, SyncRun
from app.sync.repository import DONE

Row = dict[str, Any]

# --- signing secrets ----------------------------------------------------------------------


def active_signing_secrets(*, session: Session, school_id: uuid.UUID) -> list[SigningSecret]:
    """The school's unrevoked secrets, oldest first."""
    return list(
        session.scalars(
            select(SigningSecret)
            .where(SigningSecret.school_id == school_id, col(SigningSecret.revoked_at).is_(None))
            .order_by(col(SigningSecret.created_at))
        )
    )


# --- the ESIS connection and the daily pull -----------------------------------------------


def connection_of(*, session: Session, school_id: uuid.UUID) -> EsisConnection | None:
    return session.scalar(select(EsisConnection).where(EsisConnection.school_id == school_id))


def pull_candidates(
    *, session: Session, now: dt.datetime
) -> list[tuple[uuid.UUID, dt.time, dt.date | None]]:
    """(school, daily sync time, last pulled on) of active schools with a connection that no
    worker holds a lease on at `now`."""
    rows = session.execute(
        select(col(School.id), col(School.daily_sync_time), col(EsisConnection.last_pulled_on))
        .join(EsisConnection, col(EsisConnection.school_id) == col(School.id))
        .where(
            School.coupling == CouplingState.ACTIVE.value,
            or_(
                col(EsisConnection.claimed_until).is_(None), col(EsisConnection.claimed_until) < now
            ),
        )
    )
    return [(school_id, at, last) for school_id, at, last in rows]


def claim_pull(
    *,
    session: Session,
    school_id: uuid.UUID,
    now: dt.datetime,
    until: dt.datetime,
    today: dt.date,
) -> bool:
    """Lease the school's pull of `today` until `until`: one conditional UPDATE, so of two
    workers only one wins. False when it is leased or was pulled today already."""
    won = claim_pulls(session=session, school_ids=[school_id], now=now, until=until, today=today)
    return school_id in won


CLAIMS_PER_STATEMENT = 500


def claim_pulls(
    *,
    session: Session,
    school_ids: list[uuid.UUID],
    now: dt.datetime,
    until: dt.datetime,
    today: dt.date,
) -> set[uuid.UUID]:
    """Lease the pulls of `today` of many schools until `until`, CLAIMS_PER_STATEMENT to a
    conditional UPDATE: a school leased by another worker, or pulled today already, is not
    won, and of two workers only one wins each school; a row another transaction holds is
    passed over. Returns the schools won."""
    won: set[uuid.UUID] = set()
    claimable = (
        or_(
            col(EsisConnection.claimed_until).is_(None),
            col(EsisConnection.claimed_until) < now,
        ),
        or_(
            col(EsisConnection.last_pulled_on).is_(None),
            col(EsisConnection.last_pulled_on) < today,
        ),
    )
    for start in range(0, len(school_ids), CLAIMS_PER_STATEMENT):
        chunk = school_ids[start : start + CLAIMS_PER_STATEMENT]
        # A row another tick holds is passed over, not waited for (PostgreSQL's SKIP LOCKED;
        # SQLite has one writer): that tick leases it, or a later one does. Waiting instead,
        # two ticks holding the rows of their earlier chunks could wait for each other.
        free = (
            select(col(EsisConnection.school_id))
            .where(col(EsisConnection.school_id).in_(chunk), *claimable)
            .with_for_update(skip_locked=True)
        )
        won.update(
            session.scalars(
                update(EsisConnection)
                .where(col(EsisConnection.school_id).in_(free), *claimable)
                .values(claimed_until=until)
                .returning(col(EsisConnection.school_id))
            )
        )
    return won


def finish_pull(*, session: Session, school_id: uuid.UUID, today: dt.date) -> None:
    """The school's pull of `today` is done: the lease ends."""
    session.execute(
        update(EsisConnection)
        .where(col(EsisConnection.school_id) == school_id)
        .values(last_pulled_on=today, claimed_until=None)
    )


# --- EDEXml imports -----------------------------------------------------------------------


def snapshot_by_digest(*, session: Session, school_id: uuid.UUID, digest: str) -> Snapshot | None:
    return session.scalar(
        select(Snapshot).where(Snapshot.school_id == school_id, Snapshot.body_sha256 == digest)
    )


def soft_delete(
    *,
    session: Session,
    school_id: uuid.UUID,
    table_name: str,
    record_id: uuid.UUID,
    deleted_by: str,
    now: dt.datetime,
) -> None:
    t = metadata.tables[table_name]
    session.execute(
        update(t)
        .where(t.c.school_id == school_id, t.c.id == record_id)
        .values(deleted_at=now, deleted_by=deleted_by, updated_at=now, version=t.c.version + 1)
    )


# --- the export ---------------------------------------------------------------------------


def school_row(*, session: Session, school_id: uuid.UUID) -> Row | None:
    schools = metadata.tables["school"]
    found = session.execute(schools.select().where(schools.c.id == school_id)).mappings().first()
    return dict(found) if found is not None else None


def live_rows(*, session: Session, table_name: str, school_id: uuid.UUID) -> list[Row]:
    """The table's rows of the school that are neither deleted nor purged."""
    t = metadata.tables[table_name]
    query = t.select().where(t.c.school_id == school_id, t.c.deleted_at.is_(None))
    if "tombstoned_at" in t.c:
        query = query.where(t.c.tombstoned_at.is_(None))
    return [dict(row) for row in session.execute(query).mappings()]


# --- receipt (app.coupling.receive) -------------------------------------------------------


def recent_push_times(session: Session, school_id: uuid.UUID, since: dt.datetime) -> list[Any]:
    """When the school's pushes since `since` came, oldest first (the rate limit)."""
    return list(
        session.scalars(
            select(Snapshot.received_at)
            .where(
                Snapshot.school_id == school_id,
                Snapshot.origin == "push",  # pulls are ours, not the push client's
                col(Snapshot.received_at) > since,
            )
            .order_by(col(Snapshot.received_at))
        )
    )


def compress_bodies_fast(session: Session) -> None:
    """PostgreSQL 14+: a body stored in this transaction is compressed with lz4, not pglz.

    A school's snapshot is hundreds of kB and stored on every push; pglz took four times as
    long as lz4 to store one (about 16 ms against 4 for the benchmark's 650 kB) and longer to
    read it back. Only the compression of new values changes (each value records its own, so
    older bodies read as before); a server without lz4 keeps its default."""
    if session.get_bind().dialect.name != "postgresql":
        return
    session.execute(
        text(
            "SELECT set_config('default_toast_compression', 'lz4', true) FROM pg_settings "
            "WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)"
        )
    )


# A receipt compares digests: the body (a school's snapshot, hundreds of kB) is read only
# when it is used, not with every push.
_NO_BODY = defer(cast("QueryableAttribute[Any]", Snapshot.body))


def by_idempotency_key(session: Session, school_id: uuid.UUID, key: str) -> Snapshot | None:
    return session.scalar(
        select(Snapshot)
        .options(_NO_BODY)
        .where(Snapshot.school_id == school_id, Snapshot.idempotency_key == key)
    )


def latest_received(session: Session, school_id: uuid.UUID) -> Snapshot | None:
    """The school's latest pushed or pulled snapshot, whatever became of it (body deferred)."""
    return session.scalar(
        select(Snapshot)
        .options(_NO_BODY)
        .where(Snapshot.school_id == school_id, col(Snapshot.origin).in_(("push", "pull")))
        .order_by(col(Snapshot.received_at).desc())
        .limit(1)
    )


def describe_snapshot(
    session: Session,
    school_id: uuid.UUID,
    snapshot_id: uuid.UUID,
    *,
    school_year: str,
    generated_at: dt.datetime | None,
) -> None:
    """What a stored snapshot turned out to be, set without reading its body back."""
    session.execute(
        update(Snapshot)
        .where(col(Snapshot.school_id) == school_id, col(Snapshot.id) == snapshot_id)
        .values(school_year=school_year, generated_at=generated_at)
    )


def latest_run(session: Session, school_id: uuid.UUID, snapshot_id: uuid.UUID) -> SyncRun | None:
    return session.scalar(
        select(SyncRun)
        .where(SyncRun.school_id == school_id, SyncRun.snapshot_id == snapshot_id)
        .order_by(col(SyncRun.started_at).desc())
        .limit(1)
    )


def newest_generated_done(
    session: Session, school_id: uuid.UUID, exclude: uuid.UUID
) -> dt.datetime | None:
    """The latest generation time among the school's snapshots that were received whole
    (applied, stored or held); `exclude`: the snapshot being applied."""
    return session.scalar(
        select(func.max(Snapshot.generated_at))
        .join(
            SyncRun,
            (col(SyncRun.school_id) == col(Snapshot.school_id))
            & (col(SyncRun.snapshot_id) == col(Snapshot.id)),
        )
        .where(
            Snapshot.school_id == school_id,
            col(Snapshot.id) != exclude,
            col(SyncRun.status).in_(DONE),
            col(Snapshot.origin).in_(("push", "pull")),
        )
    )


def interrupted(session: Session, cutoff: dt.datetime) -> list[Any]:
    """Runs still `received` that started before `cutoff`: (school, run, body, type)."""
    return list(
        session.execute(
            select(SyncRun.school_id, SyncRun.id, Snapshot.body, Snapshot.content_type)
            .join(
                Snapshot,
                (col(Snapshot.school_id) == col(SyncRun.school_id))
                & (col(Snapshot.id) == col(SyncRun.snapshot_id)),
            )
            .where(SyncRun.status == RunStatus.RECEIVED.value, col(SyncRun.started_at) < cutoff)
            .order_by(col(SyncRun.started_at))
        )
    )


def youngest_received(session: Session) -> dt.datetime | None:
    """When the newest run still `received` started (recovery waits out its grace)."""
    return session.scalar(
        select(func.max(SyncRun.started_at)).where(SyncRun.status == RunStatus.RECEIVED.value)
    )


def prune_refused_bodies(
    session: Session, school_id: uuid.UUID, *, budget_bytes: int, older_than: dt.datetime
) -> int:
    """Empty the bodies of refused snapshots (every run failed) beyond the school's budget,
    newest kept first, and all of those received before `older_than`. The runs keep their
    problem; the digest still recognises the body when it comes again."""
    run = SyncRun
    settled = exists().where(
        col(run.school_id) == col(Snapshot.school_id),
        col(run.snapshot_id) == col(Snapshot.id),
        col(run.status) != RunStatus.FAILED.value,
    )
    refused = list(
        session.execute(
            select(Snapshot.id, func.length(Snapshot.body), Snapshot.received_at)
            .where(
                Snapshot.school_id == school_id,
                col(Snapshot.origin).in_(("push", "pull")),
                col(Snapshot.body) != b"",
                ~settled,
            )
            .order_by(col(Snapshot.received_at).desc())
        )
    )
    used = 0
    emptied: list[uuid.UUID] = []
    for snapshot_id, size, received_at in refused:
        used += int(size or 0)
        if used > budget_bytes or received_at < older_than:
            emptied.append(snapshot_id)
    if emptied:
        session.execute(
            update(Snapshot)
            .where(col(Snapshot.school_id) == school_id, col(Snapshot.id).in_(emptied))
            .values(body=b"")
        )
    return len(emptied)


# --- runs the change guard held (`held.py`) ------------------------------------------------


def run_of(*, session: Session, school_id: uuid.UUID, run_id: uuid.UUID) -> SyncRun | None:
    return session.get(SyncRun, (school_id, run_id))


def snapshot_of(*, session: Session, school_id: uuid.UUID, snapshot_id: uuid.UUID) -> Snapshot:
    return session.get_one(Snapshot, (school_id, snapshot_id))


def applied_after(
    *, session: Session, school_id: uuid.UUID, started_at: dt.datetime
) -> uuid.UUID | None:
    """A run applied that started after `started_at`, if any."""
    return session.scalar(
        select(SyncRun.id)
        .where(
            SyncRun.school_id == school_id,
            SyncRun.status == RunStatus.APPLIED.value,
            col(SyncRun.started_at) > started_at,
        )
        .limit(1)
    )
