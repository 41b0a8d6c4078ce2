"""EDEXml files imported before activation: records get source `edexml`.

A later file updates EDEXml-sourced records except the fields edited locally; records absent
from a later file are reported, and soft-deleted only when the request asks for it (as the
platform's own EDEX upload offers "remove students not in the file"). After activation ESIS
leads (R4): imports are refused with 409.
"""

from __future__ import annotations

import hashlib
import uuid

from sqlalchemy.orm import Session, sessionmaker

from app.coupling import repository as coupling
from app.coupling.receive import record_failure
from app.db import utcnow, write_transaction
from app.errors import Conflict
from app.esis.edexml import EdexmlRead, read_edexml
from app.esis.leniency import keep_map
from app.esis.validation import check_snapshot
from app.events.service import Change, emit
from app.provenance import Source
from app.schools import repository as schools
from app.schools.models import CouplingState, UpdatePolicy
from app.sync import repository
from app.sync.models import RunKind, RunStatus, Snapshot, SyncRun
from app.sync.service import plan_merge

REMOVED_BY = "edexml-import"


def import_edexml(
    *,
    sessions: sessionmaker[Session],
    school_id: uuid.UUID,
    body: bytes,
    remove_missing: bool,
    actor: str,
) -> SyncRun:
    """Read (a bad file is a 4xx and nothing is stored), then store and apply in one go."""
    read = read_edexml(body)
    with write_transaction(sessions) as session:
        school = schools.lock(session=session, school_id=school_id)
        if school.coupling == CouplingState.ACTIVE.value:
            raise Conflict(
                "the ESIS coupling is active: ESIS leads, EDEXml imports are closed "
                "(R4); deactivate the coupling first if you must"
            )
        check_snapshot(read.snapshot, brin=school.brin, branch=school.branch)
        snapshot = _stored(session, school_id, body, actor, read.snapshot.school.school_year)
        run = SyncRun(
            school_id=school_id,
            snapshot_id=snapshot.id,
            kind=RunKind.IMPORT.value,
            origin="import",
            actor=actor,
        )
        session.add(run)
        session.flush()
        try:
            _apply(session, school_id, run, read, remove_missing, actor)
        except Exception as exc:
            session.rollback()  # frees the write lock for the failure's own transaction
            failed = SyncRun(
                school_id=school_id,
                snapshot_id=None,
                kind=RunKind.IMPORT.value,
                origin="import",
                actor=actor,
            )
            record_failure(sessions=sessions, run=failed, exc=exc)
            raise
    return run


def _stored(session: Session, school_id: uuid.UUID, body: bytes, actor: str, year: str) -> Snapshot:
    digest = hashlib.sha256(body).hexdigest()
    existing = coupling.snapshot_by_digest(session=session, school_id=school_id, digest=digest)
    if existing is not None:
        return existing  # the same file again: a new run, the same stored body
    snapshot = Snapshot(
        school_id=school_id,
        origin="import",
        content_type="application/xml",
        body=body,
        body_sha256=digest,
        received_by=actor,
        school_year=year,
    )
    session.add(snapshot)
    session.flush()
    return snapshot


def _apply(
    session: Session,
    school_id: uuid.UUID,
    run: SyncRun,
    read: EdexmlRead,
    remove_missing: bool,
    actor: str,
) -> None:
    now = utcnow()
    state = repository.load_state(session=session, school_id=school_id)
    plan = plan_merge(
        state=state,
        snapshot=read.snapshot,
        policy=UpdatePolicy.APPLY_UNEDITED,
        activation=False,
        run_id=run.id,
        now=now,
        source=Source.EDEXML,
        keep=keep_map(read.kept),
    )
    repository.write_plan(session=session, school_id=school_id, plan=plan)
    removed = 0
    if remove_missing:
        for item in plan.absent:
            coupling.soft_delete(
                session=session,
                school_id=school_id,
                table_name=item["table"],
                record_id=item["id"],
                deleted_by=REMOVED_BY,
                now=now,
            )
            plan.changes.append(
                Change(
                    item["entity"],
                    item["id"],
                    "deleted",
                    {"reason": "not in the imported EDEXml file"},
                )
            )
            plan.count(item["entity"], "removed")
            removed += 1
    emit(
        session=session,
        school_id=school_id,
        changes=plan.changes,
        source=Source.EDEXML.value,
        actor=actor,
        sync_run_id=run.id,
    )
    run.counts = plan.counts_json()
    run.warnings = [*read.warnings, *plan.warnings]
    run.kept = [k.as_json() for k in read.kept]
    run.report = {
        "absent": [
            {"entity": a["entity"], "id": str(a["id"]), "key": a["key"]} for a in plan.absent
        ],
        "removed": removed,
        "remove_missing": remove_missing,
    }
    run.status = RunStatus.APPLIED.value
    run.finished_at = now
