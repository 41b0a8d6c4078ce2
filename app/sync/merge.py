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
from app.sync import repository
from app.sync.service import plan_merge


@dataclass(frozen=True)
class MergeResult:
    counts: dict[str, dict[str, int]]
    warnings: list[str]
    report: dict[str, list[dict[str, Any]]] | None


def merge_into(
    *, session: Session, school: School, run_id: uuid.UUID, parsed: Parsed, activation: bool = False
) -> MergeResult:
    """Load the school's state once, plan the merge, write it in bulk, emit its events."""
    now = utcnow()
    state = repository.load_state(session=session, school_id=school.id)
    plan = plan_merge(
        state=state,
        snapshot=parsed.snapshot,
        policy=UpdatePolicy(school.update_policy),
        activation=activation,
        run_id=run_id,
        now=now,
        keep=keep_map(parsed.kept),  # records with an unusable value: left as they are
    )
    repository.write_plan(session=session, school_id=school.id, plan=plan)
    emit(
        session=session,
        school_id=school.id,
        changes=plan.changes,
        source="esis",
        actor="esis",
        sync_run_id=run_id,
    )
    return MergeResult(counts=plan.counts_json(), warnings=plan.warnings, report=plan.report)
