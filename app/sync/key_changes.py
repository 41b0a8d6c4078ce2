"""Key-change proposals (sync/key_pairs.py decides them): stored, listed, accepted, rejected.

Accepting one moves the record to ESIS's new key and nothing else: its local edits, links,
drift and history stay (they hang on the record's id), and the next snapshot applies ESIS's
values to it as to any known record (R5). Rejecting one makes the next snapshot treat the
two as missing + new. Neither happens by itself.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import and_, or_, update
from sqlalchemy.orm import Session
from sqlmodel import col, select

from app.db import utcnow
from app.errors import Conflict, NotFound
from app.events.service import Change, emit
from app.pagination import encode_cursor, time_id_cursor
from app.schools import repository as schools
from app.sync.models import KeyChange, KeyChangeStatus
from app.sync.plan import Plan, State
from app.sync.repository import table

TABLES = {"student": "student", "guardian": "guardian", "staff": "staff"}


def store(
    *, session: Session, school_id: uuid.UUID, run_id: uuid.UUID, plan: Plan, state: State
) -> list[Change]:
    """New proposals of `plan` (one already stored is not stored twice); their events."""
    changes: list[Change] = []
    for proposal in plan.key_changes:
        if (proposal["entity"], proposal["record_id"], proposal["new_key"]) in state.key_changes:
            continue
        row = KeyChange(school_id=school_id, run_id=run_id, **proposal)
        session.add(row)
        changes.append(
            Change(
                proposal["entity"],
                proposal["record_id"],
                "key-change-proposed",
                {
                    "key_change_id": str(row.id),
                    "esis_key": {"before": proposal["old_key"], "after": proposal["new_key"]},
                },
            )
        )
    session.flush()
    return changes


def list_proposals(
    *,
    session: Session,
    school_id: uuid.UUID,
    status: KeyChangeStatus | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[KeyChange], str | None]:
    query = select(KeyChange).where(KeyChange.school_id == school_id)
    if status is not None:
        query = query.where(KeyChange.status == status.value)
    if cursor is not None:
        after, last_id = time_id_cursor(cursor)
        query = query.where(
            or_(
                col(KeyChange.proposed_at) > after,
                and_(col(KeyChange.proposed_at) == after, col(KeyChange.id) > last_id),
            )
        )
    rows = list(
        session.scalars(
            query.order_by(col(KeyChange.proposed_at), col(KeyChange.id)).limit(limit + 1)
        )
    )
    next_cursor = None
    if len(rows) > limit:
        last_row = rows[limit - 1]
        next_cursor = encode_cursor([last_row.proposed_at.isoformat(), str(last_row.id)])
    return rows[:limit], next_cursor


def _proposed(session: Session, school_id: uuid.UUID, key_change_id: uuid.UUID) -> KeyChange:
    schools.lock(session=session, school_id=school_id)  # not while a snapshot is merged
    proposal = session.get(KeyChange, (school_id, key_change_id))
    if proposal is None:
        raise NotFound(f"no key change {key_change_id}")
    if proposal.status != KeyChangeStatus.PROPOSED.value:
        raise Conflict(f"key change {key_change_id} is {proposal.status}, not proposed")
    return proposal


def accept(
    *, session: Session, school_id: uuid.UUID, key_change_id: uuid.UUID, actor: str
) -> KeyChange:
    """The record takes the new key; everything else of it stays."""
    proposal = _proposed(session, school_id, key_change_id)
    t = table(TABLES[proposal.entity])
    record = session.execute(
        select(t.c.esis_key, t.c.deleted_at, t.c.version).where(
            t.c.school_id == school_id, t.c.id == proposal.record_id
        )
    ).first()
    if record is None or record.deleted_at is not None or record.esis_key != proposal.old_key:
        raise Conflict(
            f"the {proposal.entity} is no longer known by {proposal.old_key}: reject this proposal"
        )
    taken = session.scalar(
        select(t.c.id).where(t.c.school_id == school_id, t.c.esis_key == proposal.new_key)
    )
    if taken is not None:
        raise Conflict(
            f"another {proposal.entity} has the key {proposal.new_key} now: reject this proposal"
        )
    now = utcnow()
    session.execute(
        update(t)
        .where(t.c.school_id == school_id, t.c.id == proposal.record_id)
        .values(esis_key=proposal.new_key, updated_at=now, version=record.version + 1)
    )
    _decide(proposal, KeyChangeStatus.ACCEPTED, actor, now)
    # Other open proposals for this record or this new key can no longer be accepted.
    others = session.scalars(
        select(KeyChange).where(
            KeyChange.school_id == school_id,
            KeyChange.entity == proposal.entity,
            KeyChange.status == KeyChangeStatus.PROPOSED.value,
            col(KeyChange.id) != proposal.id,
            or_(
                col(KeyChange.record_id) == proposal.record_id,
                col(KeyChange.new_key) == proposal.new_key,
            ),
        )
    )
    for other in others:
        _decide(other, KeyChangeStatus.SUPERSEDED, actor, now)
    emit(
        session=session,
        school_id=school_id,
        source="api",
        actor=actor,
        changes=[
            Change(
                proposal.entity,
                proposal.record_id,
                "key-changed",
                {
                    "key_change_id": str(proposal.id),
                    "esis_key": {"before": proposal.old_key, "after": proposal.new_key},
                },
            )
        ],
    )
    session.flush()
    return proposal


def reject(
    *, session: Session, school_id: uuid.UUID, key_change_id: uuid.UUID, actor: str
) -> KeyChange:
    proposal = _proposed(session, school_id, key_change_id)
    _decide(proposal, KeyChangeStatus.REJECTED, actor, utcnow())
    emit(
        session=session,
        school_id=school_id,
        source="api",
        actor=actor,
        changes=[
            Change(
                proposal.entity,
                proposal.record_id,
                "key-change-rejected",
                {"key_change_id": str(proposal.id)},
            )
        ],
    )
    session.flush()
    return proposal


def _decide(proposal: KeyChange, status: KeyChangeStatus, actor: str, now: dt.datetime) -> None:
    proposal.status = status.value
    proposal.decided_by = actor
    proposal.decided_at = now
