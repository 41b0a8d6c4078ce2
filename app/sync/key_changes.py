"""Key-change proposals (sync/key_pairs.py decides them): stored, listed, accepted, rejected.

Accepting one moves the record to ESIS's new key and nothing else: its local edits, links,
drift and history stay (they hang on the record's id), and the next snapshot applies ESIS's
values to it as to any known record (R5). Rejecting one makes the next snapshot treat the
two as missing + new. Neither happens by itself.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy.orm import Session

from app.db import utcnow
from app.errors import Conflict, NotFound
from app.events.service import Change, emit
from app.pagination import encode_cursor, time_id_cursor
from app.schools import repository as schools
from app.sync import key_changes_repository as repo
from app.sync.models import KeyChange, KeyChangeStatus
from app.sync.plan import Plan, State

TABLES = {"student": "student", "guardian": "guardian", "staff": "staff"}


def store(
    *, session: Session, school_id: uuid.UUID, run_id: uuid.UUID, plan: Plan, state: State
) -> list[Change]:
    """New proposals of `plan` (one already stored is not stored twice); their events."""
    changes: list[Change] = []
    rows: list[KeyChange] = []
    for proposal in plan.key_changes:
        if (proposal["entity"], proposal["record_id"], proposal["new_key"]) in state.key_changes:
            continue
        row = KeyChange(school_id=school_id, run_id=run_id, **proposal)
        rows.append(row)
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
    repo.add_proposals(session=session, rows=rows)
    return changes


def list_proposals(
    *,
    session: Session,
    school_id: uuid.UUID,
    status: KeyChangeStatus | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[KeyChange], str | None]:
    after = time_id_cursor(cursor) if cursor is not None else None
    rows = repo.proposals_page(
        session=session, school_id=school_id, status=status, after=after, limit=limit + 1
    )
    next_cursor = None
    if len(rows) > limit:
        last_row = rows[limit - 1]
        next_cursor = encode_cursor([last_row.proposed_at.isoformat(), str(last_row.id)])
    return rows[:limit], next_cursor


def _proposed(session: Session, school_id: uuid.UUID, key_change_id: uuid.UUID) -> KeyChange:
    schools.lock(session=session, school_id=school_id)  # not while a snapshot is merged
    proposal = repo.proposal(session=session, school_id=school_id, key_change_id=key_change_id)
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
    table_name = TABLES[proposal.entity]
    record = repo.record_key(
        session=session, table_name=table_name, school_id=school_id, record_id=proposal.record_id
    )
    if record is None or record.deleted_at is not None or record.esis_key != proposal.old_key:
        raise Conflict(
            f"the {proposal.entity} is no longer known by {proposal.old_key}: reject this proposal"
        )
    taken = repo.holder_of_key(
        session=session, table_name=table_name, school_id=school_id, esis_key=proposal.new_key
    )
    if taken is not None:
        raise Conflict(
            f"another {proposal.entity} has the key {proposal.new_key} now: reject this proposal"
        )
    now = utcnow()
    repo.set_key(
        session=session,
        table_name=table_name,
        school_id=school_id,
        record_id=proposal.record_id,
        esis_key=proposal.new_key,
        now=now,
        version=record.version + 1,
    )
    _decide(proposal, KeyChangeStatus.ACCEPTED, actor, now)
    # Other open proposals for this record or this new key can no longer be accepted.
    for other in repo.rivals(session=session, school_id=school_id, accepted=proposal):
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
