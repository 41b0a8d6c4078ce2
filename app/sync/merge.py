"""One snapshot merged into a school, inside the caller's transaction and lock."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from app.db import utcnow
from app.esis.leniency import keep_map
from app.esis.parsing import Parsed
from app.events.service import emit
from app.schools.models import School, UpdatePolicy
from app.sync import key_changes, repository
from app.sync.digests import settle
from app.sync.guard import GuardShares, Held, check
from app.sync.plan import EntityState, State
from app.sync.records import drifting_records
from app.sync.rules import GUARDIAN, STAFF, STUDENT
from app.sync.service import Incoming, incoming_records, plan_merge


@dataclass(frozen=True)
class MergeResult:
    counts: dict[str, dict[str, int]]
    warnings: list[str]
    report: dict[str, list[dict[str, Any]]] | None
    held: Held | None = None  # the change guard held it: nothing was written


def merge_into(
    *,
    session: Session,
    school: School,
    run_id: uuid.UUID,
    parsed: Parsed,
    activation: bool = False,
    guard: GuardShares | None = None,
) -> MergeResult:
    """Load the school's state once, plan the merge, write it in bulk, emit its events.

    With `guard`, a plan that changes too much (app/sync/guard.py) is not written: the
    result says why it is held, with the counts it would have had."""
    now = utcnow()
    incoming = incoming_records(parsed.snapshot)
    state = state_for_merge(session, school.id, incoming, activation=activation)
    plan = plan_merge(
        state=state,
        snapshot=parsed.snapshot,
        policy=UpdatePolicy(school.update_policy),
        activation=activation,
        run_id=run_id,
        now=now,
        key_changes=True,
        keep=keep_map(parsed.kept),  # records with an unusable value: left as they are
        incoming=incoming,
    )
    if guard is not None and not activation:
        held = check(plan=plan, state=state, scope=parsed.snapshot.scope, shares=guard)
        if held is not None:
            return MergeResult(
                counts=plan.counts_json(), warnings=plan.warnings, report=None, held=held
            )
    repository.write_plan(session=session, school_id=school.id, plan=plan)
    proposed = key_changes.store(
        session=session, school_id=school.id, run_id=run_id, plan=plan, state=state
    )
    emit(
        session=session,
        school_id=school.id,
        changes=[*plan.changes, *proposed],
        source="esis",
        actor="esis",
        sync_run_id=run_id,
        plain=True,  # the snapshot's values and the records' columns: no float among them
    )
    return MergeResult(counts=plan.counts_json(), warnings=plan.warnings, report=plan.report)


def state_for_merge(
    session: Session, school_id: uuid.UUID, incoming: Incoming, *, activation: bool
) -> State:
    """The school's state, its persons that are unchanged read narrow (sync/digests.py):
    their digest says they agree with what ESIS sends, and the merge reads nothing else of
    them; the others are read whole. Groups are few and read whole (group moves read them).
    The activation matches records by their fields: it reads every record whole."""
    if activation:
        return repository.load_state(session=session, school_id=school_id)
    persons = (
        (STUDENT, "students"),
        (GUARDIAN, "guardians"),
        (STAFF, "staff"),
    )
    state = repository.load_state(
        session=session, school_id=school_id, narrow=frozenset(s.table for s, _ in persons)
    )
    wanted: dict[str, EntityState] = {}
    for spec, attribute in persons:
        entity: EntityState = getattr(state, attribute)
        entity.settled = settle(entity, incoming[spec.name], drifting_records(state, spec))
        wanted[spec.table] = entity
    repository.fill(session=session, school_id=school_id, wanted=wanted)
    return state
