"""Users' writes to the roster: edits (R5's local side), deletions (R6), restore, creation (R4).

Every write locks the school (writers of one school run one after the other), bumps the
record's version (its ETag) and writes an event in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from pydantic import BaseModel
from sqlalchemy.orm import Session

from app.db import new_id, utcnow
from app.errors import Conflict, NotFound, Unprocessable
from app.events.service import Change, emit
from app.provenance import Source
from app.roster import repository as repo
from app.roster.etags import check_if_match
from app.roster.repository import GROUPS, GUARDIANS, STAFF, STUDENTS, Kind, Row
from app.schools import repository as schools
from app.schools.models import CouplingState, School

REQUIRED = frozenset({"last_name", "name"})


def etag(row: Row) -> str:
    return f'"{row["version"]}"'


def get(*, session: Session, kind: Kind, school_id: uuid.UUID, record_id: uuid.UUID) -> Row:
    row = repo.get_row(session=session, table=kind.table, school_id=school_id, record_id=record_id)
    if row is None:
        raise NotFound(f"no {kind.name} {record_id} at this school")
    return row


def _check_etag(row: Row, if_match: str | None) -> None:
    check_if_match(if_match, etag(row), what="record", version=row["version"])


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.date):
        return value.isoformat()
    if hasattr(value, "value"):
        return value.value
    return value


def patch(
    *,
    session: Session,
    kind: Kind,
    school_id: uuid.UUID,
    record_id: uuid.UUID,
    data: BaseModel,
    if_match: str | None,
    actor: str,
) -> Row:
    """Change fields and mark each changed one as edited locally (R5 keeps it from ESIS)."""
    school = schools.lock(session=session, school_id=school_id)
    row = get(session=session, kind=kind, school_id=school_id, record_id=record_id)
    _check_etag(row, if_match)
    if row["tombstoned_at"] is not None:
        raise Conflict(f"this {kind.name} was purged; only its key remains")
    values = data.model_dump(exclude_unset=True)
    members = values.pop("student_ids", None)
    if "esis_key" in values:
        _check_key_change(session, school, kind, row, values["esis_key"])
    now = utcnow()
    edits = dict(row["local_edits"] or {})
    update_values: dict[str, Any] = {}
    changes: dict[str, Any] = {}
    for name, value in values.items():
        if value is None and name in REQUIRED:
            raise Unprocessable(
                f"{name}: may not be empty", errors=[{"field": name, "message": "may not be empty"}]
            )
        value = _jsonable(value)
        stored = _jsonable(row[name])
        if value == stored:
            continue
        update_values[name] = (
            dt.date.fromisoformat(value) if name == "birth_date" and value else value
        )
        changes[name] = {"before": stored, "after": value}
        if name != "esis_key":
            edits[name] = {"by": actor, "at": now.isoformat()}
    if members is not None:
        _set_members(session, school_id, row, members, changes)
    if not update_values and not changes:
        return row
    update_values.update(local_edits=edits, updated_at=now, version=row["version"] + 1)
    repo.update_record(
        session=session,
        table=kind.table,
        school_id=school_id,
        record_id=record_id,
        values=update_values,
    )
    _refresh_drift(session, school_id, kind, record_id, update_values)
    emit(
        session=session,
        school_id=school_id,
        source="api",
        actor=actor,
        changes=[Change(kind.name, record_id, "updated", changes)],
    )
    return get(session=session, kind=kind, school_id=school_id, record_id=record_id)


def _check_key_change(session: Session, school: School, kind: Kind, row: Row, key: Any) -> None:
    """Before activation a local or EDEXml record may get its LAS key (it helps matching, R2)."""
    if school.coupling == CouplingState.ACTIVE.value:
        raise Conflict("esis_key: after activation the key is ESIS's and cannot be changed here")
    if row["source"] == Source.ESIS.value:
        raise Conflict("esis_key: this record came from ESIS; its key is ESIS's")
    if key is not None and repo.key_taken(
        session=session, table=kind.table, school_id=school.id, key=key, other_than=row["id"]
    ):
        raise Conflict(f"esis_key: {key!r} belongs to another {kind.name} of this school")


def _refresh_drift(
    session: Session, school_id: uuid.UUID, kind: Kind, record_id: uuid.UUID, values: Row
) -> None:
    """A local edit changes 'our value' of open drift; agreeing with ESIS closes it."""
    for item in repo.open_drift(
        session=session,
        school_id=school_id,
        entity=kind.name,
        record_id=record_id,
        fields=list(values),
    ):
        ours = _jsonable(values[item["field"]])
        if ours == item["esis_value"]:
            repo.close_drift(session=session, school_id=school_id, drift_id=item["id"])
        else:
            repo.set_drift_ours(
                session=session, school_id=school_id, drift_id=item["id"], value=ours
            )


def _set_members(
    session: Session,
    school_id: uuid.UUID,
    group: Row,
    student_ids: list[uuid.UUID],
    changes: dict[str, Any],
) -> None:
    if group["source"] != Source.LOCAL.value:
        raise Conflict(
            "student_ids: only local groups' members are set here; ESIS leads for "
            "the memberships of its groups (R4)"
        )
    _require_live(session, school_id, STUDENTS, student_ids)
    current = repo.members_of(session=session, school_id=school_id, group_id=group["id"])
    wanted = set(student_ids)
    if wanted == current:
        return
    repo.unlink_members(
        session=session, school_id=school_id, group_id=group["id"], student_ids=current - wanted
    )
    _link(
        session,
        school_id,
        "student_group",
        "student_id",
        "group_id",
        [(s, group["id"], {}) for s in wanted - current],
    )
    changes["student_ids"] = {
        "before": sorted(map(str, current)),
        "after": sorted(map(str, wanted)),
    }


def _link(
    session: Session,
    school_id: uuid.UUID,
    link: str,
    a: str,
    b: str,
    pairs: list[tuple[uuid.UUID, uuid.UUID, dict[str, Any]]],
) -> None:
    if not pairs:
        return
    now = utcnow()
    repo.insert_links(
        session=session,
        link=link,
        rows=[
            {
                "school_id": school_id,
                "id": new_id(),
                a: x,
                b: y,
                "source": Source.LOCAL.value,
                "local_edits": {},
                "created_at": now,
                "updated_at": now,
                **extra,
            }
            for x, y, extra in pairs
        ],
    )


def _require_live(session: Session, school_id: uuid.UUID, kind: Kind, ids: list[uuid.UUID]) -> None:
    if not ids:
        return
    found = repo.live_ids(session=session, table=kind.table, school_id=school_id, ids=ids)
    missing = [str(i) for i in ids if i not in found]
    if missing:
        raise Unprocessable(
            f"no {kind.name} {missing[0]} at this school",
            errors=[
                {"field": f"{kind.name}_ids", "message": f"unknown {kind.name} {m}"}
                for m in missing
            ],
        )


def soft_delete(
    *,
    session: Session,
    kind: Kind,
    school_id: uuid.UUID,
    record_id: uuid.UUID,
    if_match: str | None,
    actor: str,
) -> None:
    """R6: a soft delete; the next ESIS snapshot does not bring the record back."""
    schools.lock(session=session, school_id=school_id)
    row = get(session=session, kind=kind, school_id=school_id, record_id=record_id)
    _check_etag(row, if_match)
    if row["deleted_at"] is not None:
        return
    now = utcnow()
    repo.update_record(
        session=session,
        table=kind.table,
        school_id=school_id,
        record_id=record_id,
        values={
            "deleted_at": now,
            "deleted_by": actor,
            "updated_at": now,
            "version": row["version"] + 1,
        },
    )
    repo.drop_drift_of_record(
        session=session, school_id=school_id, entity=kind.name, record_id=record_id
    )
    emit(
        session=session,
        school_id=school_id,
        source="api",
        actor=actor,
        changes=[Change(kind.name, record_id, "deleted")],
    )


def restore(
    *,
    session: Session,
    kind: Kind,
    school_id: uuid.UUID,
    record_id: uuid.UUID,
    retention_days: int,
    actor: str,
) -> Row:
    """Undo a deletion while the retention window lasts."""
    schools.lock(session=session, school_id=school_id)
    row = get(session=session, kind=kind, school_id=school_id, record_id=record_id)
    if row["deleted_at"] is None:
        raise Conflict(f"this {kind.name} is not deleted")
    if row["tombstoned_at"] is not None or (
        row["deleted_at"] + dt.timedelta(days=retention_days) < utcnow()
    ):
        raise Conflict(
            f"the retention window of {retention_days} days has passed; the personal "
            "data is (or will be) purged"
        )
    repo.update_record(
        session=session,
        table=kind.table,
        school_id=school_id,
        record_id=record_id,
        values={
            "deleted_at": None,
            "deleted_by": None,
            "updated_at": utcnow(),
            "version": row["version"] + 1,
        },
    )
    changes = [Change(kind.name, record_id, "restored")]
    marker = row["deleted_by"] or ""
    if kind is STUDENTS and marker.startswith("year-transition:"):
        changes += _restore_guardians_of(session, school_id, record_id, marker)
    emit(session=session, school_id=school_id, source="api", actor=actor, changes=changes)
    return get(session=session, kind=kind, school_id=school_id, record_id=record_id)


def _restore_guardians_of(
    session: Session, school_id: uuid.UUID, student_id: uuid.UUID, marker: str
) -> list[Change]:
    """A student removed by mistake at the year transition comes back with the guardians
    that were removed because of it (R8), and so with their links."""
    ids = repo.guardians_removed_with(
        session=session, school_id=school_id, student_id=student_id, marker=marker
    )
    if ids:
        repo.undelete(
            session=session, table=GUARDIANS.table, school_id=school_id, ids=ids, now=utcnow()
        )
    return [Change("guardian", i, "restored", {"with_student": str(student_id)}) for i in ids]


def create(
    *, session: Session, kind: Kind, school_id: uuid.UUID, data: BaseModel, actor: str
) -> Row:
    """A local record. Persons only before activation (R4); local groups always (R10)."""
    school = schools.lock(session=session, school_id=school_id)
    if kind is not GROUPS and school.coupling == CouplingState.ACTIVE.value:
        raise Conflict(f"the ESIS coupling is active: new {kind.collection} come from ESIS (R4)")
    values = {k: _jsonable(v) for k, v in data.model_dump().items()}
    group_ids = values.pop("group_ids", [])
    student_ids = values.pop("student_ids", [])
    students = values.pop("students", [])
    if values.get("birth_date"):
        values["birth_date"] = dt.date.fromisoformat(values["birth_date"])
    record_id = new_id()
    now = utcnow()
    repo.insert_record(
        session=session,
        table=kind.table,
        values={
            "school_id": school_id,
            "id": record_id,
            "source": Source.LOCAL.value,
            "local_edits": {},
            "created_at": now,
            "updated_at": now,
            "version": 1,
            **{k: v for k, v in values.items() if v is not None or k in ("roles",)},
        },
    )
    _require_live(session, school_id, GROUPS, group_ids)
    if kind is STUDENTS:
        _link(
            session,
            school_id,
            "student_group",
            "student_id",
            "group_id",
            [(record_id, g, {}) for g in group_ids],
        )
    elif kind is STAFF:
        _link(
            session,
            school_id,
            "staff_group",
            "staff_id",
            "group_id",
            [(record_id, g, {}) for g in group_ids],
        )
    elif kind is GUARDIANS:
        _require_live(session, school_id, STUDENTS, [s["student_id"] for s in students])
        _link(
            session,
            school_id,
            "student_guardian",
            "student_id",
            "guardian_id",
            [(s["student_id"], record_id, {"relation": s["relation"]}) for s in students],
        )
    else:
        _require_live(session, school_id, STUDENTS, student_ids)
        _link(
            session,
            school_id,
            "student_group",
            "student_id",
            "group_id",
            [(s, record_id, {}) for s in student_ids],
        )
    emit(
        session=session,
        school_id=school_id,
        source="api",
        actor=actor,
        changes=[
            Change(
                kind.name,
                record_id,
                "created",
                {k: {"before": None, "after": _jsonable(v)} for k, v in values.items()},
            )
        ],
    )
    return get(session=session, kind=kind, school_id=school_id, record_id=record_id)
