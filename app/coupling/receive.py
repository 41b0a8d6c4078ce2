"""A snapshot's way through the service: stored on receipt, validated, applied in one
transaction under the school's lock, and recorded as a sync run whatever happens.

Three transactions, so that a failure never half-applies and is never forgotten:
1. store the raw body and open a run (`received`);
2. lock the school, merge, write, mark the run `applied` (or `stored`/`held`), commit;
3. only when 2 failed: mark the run `failed` with the problem.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
import time
import uuid
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from app.coupling import held
from app.coupling import repository as receipts
from app.db import begin_write, utcnow
from app.errors import (
    ClientError,
    Conflict,
    DomainError,
    TooManyRequests,
    Unprocessable,
    UnsupportedMediaType,
)
from app.esis.media import media_type
from app.esis.parsing import UWLR_TYPE, Parsed, parse_snapshot
from app.esis.scrub import strip_national_ids
from app.esis.validation import check_snapshot
from app.metrics import observe_merge
from app.schools import repository as schools
from app.schools.models import CouplingState, School
from app.sync.gcpause import paused
from app.sync.merge import merge_into
from app.sync.models import RunStatus, Snapshot, SyncRun
from app.sync.repository import DONE
from app.year_transition.flow import start_from_snapshot

log = logging.getLogger("esis_sync.sync")


@dataclass(frozen=True)
class PushLimits:
    """From the settings: records per snapshot, new snapshots per school per minute, and how
    much of its refused bodies a school keeps, for how long."""

    max_records: int = 200_000
    per_minute: int = 30
    refused_budget_bytes: int = 32 * 1024 * 1024
    refused_keep: dt.timedelta = dt.timedelta(hours=24)


class StaleSnapshot(Conflict):
    slug, title = "stale-snapshot", "Snapshot older than the one applied"


@dataclass(frozen=True)
class Received:
    run: SyncRun
    replayed: bool


def receive_snapshot(
    *,
    sessions: sessionmaker[Session],
    school_id: uuid.UUID,
    body: bytes,
    content_type: str,
    idempotency_key: str | None,
    origin: str,
    actor: str,
    today: dt.date,
    limits: PushLimits | None = None,
    parsed: Parsed | None = None,
    turns: AbstractContextManager[Any] = nullcontext(),
) -> Received:
    """Store, validate and apply one pushed or pulled snapshot (R3: both take this path).

    `parsed`: the body already read (a pull parses the answer to check it), not read again.
    `turns`: entered in each of the two transactions once the school's lock is held, until
    its commit (a worker's pulls take turns there, `PullOptions.gate`); so a pull waiting for
    its school's lock does not hold up the worker's other pulls."""
    limits = limits or PushLimits()
    if origin == "push" and media_type(content_type) == UWLR_TYPE:
        # How pulled answers are stored; a client sending it would reach the SOAP reader.
        raise UnsupportedMediaType(
            f"send a snapshot as application/json or EDEXml as application/xml, not {UWLR_TYPE}"
        )
    digest = hashlib.sha256(body).hexdigest()  # of the body as sent: replays are recognised
    stored = _store(
        sessions=sessions,
        school_id=school_id,
        body=strip_national_ids(body, content_type),
        digest=digest,
        content_type=content_type,
        idempotency_key=idempotency_key,
        origin=origin,
        actor=actor,
        per_minute=limits.per_minute,
        turns=turns,
    )
    if isinstance(stored, Received):
        return stored
    _snapshot, run, replayed = stored
    try:
        # The cyclic collector waits while the snapshot is read and applied: both build tens
        # of thousands of short-lived objects, and each collection on the way would walk
        # everything alive (app/sync/gcpause.py). Reference counting frees them as before.
        with paused():
            parsed = parsed or parse_snapshot(body, content_type, max_records=limits.max_records)
            run = _apply(
                sessions=sessions,
                school_id=school_id,
                run_id=run.id,
                parsed=parsed,
                today=today,
                max_records=limits.max_records,
                turns=turns,
            )
            # Freed here, while the collector waits: alive when it resumes, the snapshot's
            # tens of thousands of objects would be walked by the collection that the first
            # allocation after the pause sets off (4 to 12 ms of a 1,000-student push).
            del parsed
        if run.status == RunStatus.FAILED.value and run.error and run.error["status"] < 500:
            raise _replayed_problem(run.error)  # recovery failed it first: the same problem
    except Exception as exc:
        _fail(sessions=sessions, school_id=school_id, run_id=run.id, exc=exc, limits=limits)
        raise
    return Received(run=run, replayed=replayed)


def _store(
    *,
    sessions: sessionmaker[Session],
    school_id: uuid.UUID,
    body: bytes,
    digest: str,
    content_type: str,
    idempotency_key: str | None,
    origin: str,
    actor: str,
    per_minute: int,
    turns: AbstractContextManager[Any] = nullcontext(),
) -> Received | tuple[Snapshot, SyncRun, bool]:
    """Transaction 1: keep the raw body; or find that it was received before.

    Under the school's lock, so that of simultaneous copies one stores and the others find
    it. A copy that finds the first one's run still `received` takes that run (whoever gets
    the lock in `_apply` first applies it, the other finds it done): one run per snapshot."""
    with sessions() as session, ExitStack() as turn:
        begin_write(session)
        # One receipt at a time per school, so two copies of one body are stored once.
        schools.lock(session=session, school_id=school_id)
        turn.enter_context(turns)
        existing = _find_existing(session, school_id, digest, idempotency_key)
        if existing is None:
            _check_rate(session, school_id, per_minute)
            receipts.compress_bodies_fast(session)
            snapshot = Snapshot(
                school_id=school_id,
                origin=origin,
                content_type=content_type[:100],
                body=body,
                body_sha256=digest,
                idempotency_key=idempotency_key,
                received_by=actor,
            )
            session.add(snapshot)
            try:
                session.flush()
            except IntegrityError:
                # A concurrent request with the same Idempotency-Key came first: its run.
                session.rollback()
                begin_write(session)
                existing = _find_existing(session, school_id, digest, idempotency_key)
                if existing is None:
                    raise
        if existing is not None:
            if existing.body_sha256 != digest:
                raise Conflict(
                    "this Idempotency-Key was used before with a different body",
                    idempotency_key=idempotency_key,
                )
            previous = receipts.latest_run(session, school_id, existing.id)
            if previous is not None and previous.status in DONE:
                return Received(run=previous, replayed=True)
            if previous is not None and previous.error and previous.error.get("status", 500) < 500:
                # The same body fails the same way: answer with the same problem.
                raise _replayed_problem(previous.error)
            if previous is not None and previous.status == RunStatus.RECEIVED.value:
                session.commit()
                return existing, previous, True  # being applied, or interrupted: that run
            snapshot = existing  # received before, its run failed with a server error
            if not snapshot.body:
                snapshot.body = body  # emptied by the refused-body budget meanwhile
        run = SyncRun(school_id=school_id, snapshot_id=snapshot.id, origin=origin, actor=actor)
        session.add(run)
        session.commit()
        return snapshot, run, False


def _check_rate(session: Session, school_id: uuid.UUID, per_minute: int) -> None:
    """Counted from the stored snapshots, so the limit holds across replicas and workers."""
    now = utcnow()
    recent = receipts.recent_push_times(session, school_id, now - dt.timedelta(minutes=1))
    if len(recent) >= per_minute:
        retry = max(1, math.ceil((recent[0] + dt.timedelta(minutes=1) - now).total_seconds()))
        raise TooManyRequests(
            f"more than {per_minute} snapshots for this school in a minute; try again in {retry} s",
            headers={"Retry-After": str(retry)},
            retry_after=retry,
        )


def _find_existing(
    session: Session, school_id: uuid.UUID, digest: str, idempotency_key: str | None
) -> Snapshot | None:
    """The same Idempotency-Key ever, or the same body as the school's latest snapshot.

    Only the latest counts for bodies: a retry or a daily pull with nothing new is found here;
    older data sent again is a new snapshot, which `_apply` refuses when it was generated
    before the one last applied.
    """
    if idempotency_key is not None:
        by_key = receipts.by_idempotency_key(session, school_id, idempotency_key)
        if by_key is not None:
            return by_key
    latest = receipts.latest_received(session, school_id)
    return latest if latest is not None and latest.body_sha256 == digest else None


def _replayed_problem(error: dict[str, Any]) -> DomainError:
    problem = DomainError(str(error.get("detail", "")), **error.get("extra", {}))
    problem.status = int(error["status"])
    problem.slug = str(error.get("slug", "validation"))
    problem.title = str(error.get("title", "Request is not valid"))
    return problem


def in_pause(school: School, today: dt.date) -> bool:
    """Inside the school's summer pause window (inclusive, school-local dates)."""
    return (
        school.pause_start is not None
        and school.pause_end is not None
        and school.pause_start <= today <= school.pause_end
    )


def _apply(
    *,
    sessions: sessionmaker[Session],
    school_id: uuid.UUID,
    run_id: uuid.UUID,
    parsed: Parsed,
    today: dt.date,
    max_records: int | None = None,
    turns: AbstractContextManager[Any] = nullcontext(),
) -> SyncRun:
    """Transaction 2: everything the snapshot changes, or nothing."""
    started = time.perf_counter()
    with sessions() as session, ExitStack() as turn:
        begin_write(session)
        school = schools.lock(session=session, school_id=school_id)
        turn.enter_context(turns)
        run = session.get_one(SyncRun, (school_id, run_id))
        if run.status != RunStatus.RECEIVED.value:
            return run  # applied meanwhile (by restart recovery): never twice
        snapshot = parsed.snapshot
        check_snapshot(snapshot, brin=school.brin, branch=school.branch, max_records=max_records)
        _check_generated(session, school_id, run.snapshot_id, snapshot.school.generated_at)
        year = snapshot.school.school_year
        if school.current_school_year is not None and year < school.current_school_year:
            raise Unprocessable(
                f"school.school_year: {year} is earlier than the school's current year "
                f"{school.current_school_year}; an older snapshot is never applied",
                errors=[
                    {"field": "school.school_year", "message": "earlier than the current year"}
                ],
            )
        warnings = list(parsed.warnings)
        run.kept = [k.as_json() for k in parsed.kept]
        assert run.snapshot_id is not None
        receipts.describe_snapshot(
            session,
            school_id,
            run.snapshot_id,
            school_year=year,
            generated_at=snapshot.school.generated_at,
        )
        if school.coupling != CouplingState.ACTIVE.value:
            # Before activation snapshots feed readiness (R1) and activation (R2) only.
            run.status = RunStatus.STORED.value
            warnings.append("the coupling is not active: stored for readiness and activation")
        elif in_pause(school, today):
            run.status = RunStatus.HELD.value
            warnings.append(
                f"inside the school's pause window ({school.pause_start} to {school.pause_end}): "
                "stored, not applied; no year transition starts by itself"
            )
        elif school.current_school_year is not None and year > school.current_school_year:
            # R7-R11: the first snapshot of a new school year starts the year transition.
            outcome = start_from_snapshot(
                session=session, school=school, run=run, parsed=parsed, actor="esis"
            )
            run.status = outcome.status.value
            run.counts = outcome.counts
            run.report = {"year_transition_id": str(outcome.transition.id)}
            warnings.extend(outcome.warnings)
        else:
            guard = held.shares_of(school)  # the change guard: not on the first load
            result = merge_into(
                session=session, school=school, run_id=run.id, parsed=parsed, guard=guard
            )
            run.counts = result.counts
            warnings.extend(result.warnings)
            run.status = RunStatus.APPLIED.value
            if result.held is not None:
                warnings.extend(
                    held.hold(session=session, school=school, run=run, held=result.held)
                )
            elif school.current_school_year is None:
                school.current_school_year = year
        run.warnings = warnings
        run.finished_at = utcnow()
        session.commit()
    observe_merge(run.kind, time.perf_counter() - started)
    log.info(
        "snapshot run finished",
        extra={
            "school_id": str(school_id),
            "sync_run_id": str(run_id),
            "status": run.status,
            "duration_ms": round((time.perf_counter() - started) * 1000),
        },
    )
    return run


def _check_generated(
    session: Session,
    school_id: uuid.UUID,
    snapshot_id: uuid.UUID | None,
    generated: dt.datetime | None,
) -> None:
    """Out-of-order delivery never rolls a school back: a snapshot generated before the
    newest one received whole is refused (409), when both say when they were generated."""
    if generated is None:
        return
    if generated.tzinfo is None:
        raise Unprocessable(
            "school.generated_at: give a UTC offset (2026-11-27T16:55:00+01:00)",
            errors=[{"field": "school.generated_at", "message": "no UTC offset"}],
        )
    assert snapshot_id is not None
    newest = receipts.newest_generated_done(session, school_id, exclude=snapshot_id)
    if newest is not None and generated < newest:
        raise StaleSnapshot(
            f"this snapshot was generated at {generated.isoformat()}, before the one already "
            f"received ({newest.isoformat()}); an older snapshot is never applied",
            generated_at=generated.isoformat(),
            newest_generated_at=newest.isoformat(),
        )


def recover_interrupted(
    *,
    sessions: sessionmaker[Session],
    today: dt.date,
    grace: dt.timedelta = dt.timedelta(seconds=2),
) -> list[SyncRun]:
    """Apply (or report as failed) snapshots that were stored but never applied because the
    process died between receiving and applying them. Run at start and by the worker.

    A run younger than `grace` may be between its two transactions in a live request; one
    being merged holds the school's lock, so recovery waits and then finds it done."""
    done = _recover_before(sessions=sessions, today=today, cutoff=utcnow() - grace)
    # Runs younger than the grace were left alone: a process restarted within it would never
    # see them again without a worker. Wait until they are old enough, then look once more.
    with sessions() as session:
        youngest = receipts.youngest_received(session)
    if youngest is not None:
        wait = (youngest + grace - utcnow()).total_seconds()
        if wait > 0:
            time.sleep(min(wait, grace.total_seconds()) + 0.05)
        done += _recover_before(sessions=sessions, today=today, cutoff=utcnow() - grace)
    return done


def _recover_before(
    *, sessions: sessionmaker[Session], today: dt.date, cutoff: dt.datetime
) -> list[SyncRun]:
    with sessions() as session:
        pending = receipts.interrupted(session, cutoff)
    done: list[SyncRun] = []
    for school_id, run_id, body, content_type in pending:
        log.warning(
            "applying a snapshot interrupted before it was applied",
            extra={"school_id": str(school_id), "sync_run_id": str(run_id)},
        )
        try:
            parsed = parse_snapshot(body, content_type)
            done.append(
                _apply(
                    sessions=sessions,
                    school_id=school_id,
                    run_id=run_id,
                    parsed=parsed,
                    today=today,
                )
            )
        except Exception as exc:  # recorded on the run, like any failure
            _fail(sessions=sessions, school_id=school_id, run_id=run_id, exc=exc)
    return done


def problem_of(exc: Exception) -> dict[str, Any]:
    """What a failed run records: the problem a client saw, or a server error without details."""
    if isinstance(exc, ClientError):
        return {
            "status": exc.status,
            "slug": exc.slug,
            "title": exc.title,
            "detail": exc.detail,
            "extra": exc.extra,
        }
    return {
        "status": 500,
        "slug": "internal",
        "title": "Internal error",
        "detail": f"the snapshot could not be applied ({type(exc).__name__}); nothing was changed",
    }


def _fail(
    *,
    sessions: sessionmaker[Session],
    school_id: uuid.UUID,
    run_id: uuid.UUID,
    exc: Exception,
    limits: PushLimits | None = None,
) -> None:
    """Transaction 3: the run is recorded as failed, with what went wrong; refused bodies
    beyond the school's budget, or older than it keeps them, are emptied."""
    limits = limits or PushLimits()
    with sessions() as session:
        begin_write(session)
        run = session.get_one(SyncRun, (school_id, run_id))
        _mark_failed(run, exc)
        session.flush()
        receipts.prune_refused_bodies(
            session,
            school_id,
            budget_bytes=limits.refused_budget_bytes,
            older_than=utcnow() - limits.refused_keep,
        )
        session.commit()


def record_failure(*, sessions: sessionmaker[Session], run: SyncRun, exc: Exception) -> None:
    """Record a run that failed inside a transaction that was rolled back."""
    with sessions() as session:
        begin_write(session)
        _mark_failed(run, exc)
        session.add(run)
        session.commit()


def record_outcome(
    *, sessions: sessionmaker[Session], run: SyncRun, status: RunStatus, warnings: list[str]
) -> None:
    """Record a run that ended without a snapshot to apply (e.g. ESIS had no changes)."""
    with sessions() as session:
        begin_write(session)
        run.status = status.value
        run.warnings = warnings
        run.finished_at = utcnow()
        session.add(run)
        session.commit()


def _mark_failed(run: SyncRun, exc: Exception) -> None:
    run.status = RunStatus.FAILED.value
    run.error = problem_of(exc)
    run.finished_at = utcnow()
    log.warning(
        "sync run failed",
        extra={
            "school_id": str(run.school_id),
            "sync_run_id": str(run.id),
            "error_type": type(exc).__name__,
            "status": run.error["status"],
        },
    )
