"""Schools: creation, policy, and their API keys."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.auth.models import ApiKey, Role
from app.auth.service import Principal, create_key, revoke_key
from app.db import utcnow
from app.errors import Conflict, Forbidden, Unprocessable
from app.events.service import Change, emit
from app.pagination import decode_cursor, encode_cursor, invalid_cursor
from app.schools import repository
from app.schools.models import School
from app.schools.schemas import ApiKeyCreate, SchoolCreate, SchoolUpdate


def create_school(
    *, session: Session, data: SchoolCreate, daily_cutoff: dt.time, actor: str
) -> School:
    """A new school, inactive (R2); its daily pull is at `daily_cutoff` unless `data` says
    otherwise (the setting ESIS_SYNC_DAILY_CUTOFF, R3)."""
    key = data.brin + data.branch
    if repository.get_by_key(session=session, key=key) is not None:
        raise Conflict(f"school {key} already exists", school=key)
    school = School(
        key=key,
        brin=data.brin,
        branch=data.branch,
        name=data.name,
        update_policy=data.update_policy.value,
        daily_sync_time=data.daily_sync_time or daily_cutoff,
        removal_guard_share=data.removal_guard_share,
        change_guard_update_share=data.change_guard_update_share,
        change_guard_missing_share=data.change_guard_missing_share,
    )
    session.add(school)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(f"school {key} already exists", school=key) from None
    emit(
        session=session,
        school_id=school.id,
        changes=[Change("school", school.id, "created", {"key": {"before": None, "after": key}})],
        source="api",
        actor=actor,
    )
    return school


def update_school(
    *, session: Session, school_id: uuid.UUID, data: SchoolUpdate, actor: str
) -> School:
    school = repository.lock(session=session, school_id=school_id)
    changed: dict[str, Any] = {}
    values = data.model_dump(exclude_unset=True)
    if "pause_start" in values or "pause_end" in values:
        start = values.get("pause_start", school.pause_start)
        end = values.get("pause_end", school.pause_end)
        if (start is None) != (end is None) or (start is not None and start > end):
            raise Unprocessable(
                "pause_start and pause_end: set both, with the start not after the end, or "
                "null both to clear the pause window",
                errors=[{"field": "pause_start", "message": "incomplete or reversed window"}],
            )
    for name, value in values.items():
        if value is None and name not in ("pause_start", "pause_end"):
            raise Unprocessable(f"{name}: may not be null", field=name)
        stored = value.value if hasattr(value, "value") else value
        before = getattr(school, name)
        if before != stored:
            changed[name] = {"before": _jsonable(before), "after": _jsonable(stored)}
            setattr(school, name, stored)
    if changed:
        school.updated_at = utcnow()
        session.flush()
        emit(
            session=session,
            school_id=school.id,
            changes=[Change("school", school.id, "updated", changed)],
            source="api",
            actor=actor,
        )
    return school


def list_schools(
    *, session: Session, limit: int, cursor: str | None
) -> tuple[list[School], str | None]:
    after = None
    if cursor is not None:
        after = decode_cursor(cursor)
        if not isinstance(after, str):
            raise invalid_cursor()
    rows = repository.page_by_key(session=session, after=after, limit=limit + 1)
    next_cursor = encode_cursor(rows[limit - 1].key) if len(rows) > limit else None
    return rows[:limit], next_cursor


def create_school_key(
    *, session: Session, school: School, data: ApiKeyCreate, principal: Principal
) -> tuple[ApiKey, str]:
    if data.role == Role.OPERATOR:
        raise Forbidden("operator keys are made with `esis-sync create-operator-key`")
    key, secret = create_key(
        session=session,
        role=data.role,
        name=data.name,
        school_id=school.id,
        created_by=principal.actor,
    )
    emit(
        session=session,
        school_id=school.id,
        changes=[
            Change("api_key", key.id, "created", {"role": {"before": None, "after": key.role}})
        ],
        source="api",
        actor=principal.actor,
    )
    return key, secret


def _jsonable(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def revoke_school_key(
    *, session: Session, school: School, key_id: uuid.UUID, principal: Principal
) -> None:
    revoke_key(session=session, school_id=school.id, key_id=key_id)
    emit(
        session=session,
        school_id=school.id,
        changes=[Change("api_key", key_id, "revoked")],
        source="api",
        actor=principal.actor,
    )
