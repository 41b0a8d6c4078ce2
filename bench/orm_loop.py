"""The baseline: the same sync as a straightforward per-record ORM loop.

This is what a first implementation would look like: for every group, person and link, look
the record up by its ESIS key (or the link by its two ends), add or update the ORM object,
and `flush()`, one record at a time. It keeps the service's bookkeeping that matters for a
fair comparison: provenance columns (`source`, `esis_key`, `esis_values`), one event per
change, drift items for changed personal fields (the default `ignore` policy, R5) and the
missing-in-ESIS mark (R6). It skips what the service does around the merge (storing the raw
body, the sync run, HTTP), so the ratio it gives is, if anything, in the loop's favour.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import SQLModel, col, select

from app.db import begin_write, utcnow
from app.esis.parsing import parse_json
from app.esis.schemas import EsisSnapshot
from app.events.models import Event
from app.roster.models import (
    Group,
    Guardian,
    Staff,
    StaffGroup,
    Student,
    StudentGroup,
    StudentGuardian,
)
from app.schools.models import School
from app.sync.models import DriftItem

Record = Group | Student | Guardian | Staff
RecordType = type[Group] | type[Student] | type[Guardian] | type[Staff]

GROUP_FIELDS = ("name", "description", "year_level", "is_composite")
NAME_FIELDS = ("last_name", "name_prefix", "initials", "given_name")
STUDENT_FIELDS = (
    *NAME_FIELDS,
    "first_names",
    "birth_date",
    "gender",
    "year_level",
    "email",
)
GUARDIAN_FIELDS = (*NAME_FIELDS, "email", "phone")
STAFF_FIELDS = (*NAME_FIELDS, "email", "roles", "active")
# Fields ESIS states for itself: they follow ESIS; every other field of a person is R5's.
FOLLOW = frozenset({"school_year", "active"})


def _to_db(name: str, value: Any) -> Any:
    if name == "birth_date" and isinstance(value, str):
        return dt.date.fromisoformat(value)
    return value


def _from_db(value: Any) -> Any:
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


@dataclass
class Loop:
    session: Session
    school_id: uuid.UUID
    run_id: uuid.UUID
    now: dt.datetime
    next_seq: int
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def event(self, entity: str, entity_id: uuid.UUID, kind: str, changes: dict[str, Any]) -> None:
        self.session.add(
            Event(
                school_id=self.school_id,
                seq=self.next_seq,
                occurred_at=self.now,
                entity=entity,
                entity_id=entity_id,
                kind=kind,
                changes=changes,
                source="esis",
                actor="esis",
                sync_run_id=self.run_id,
            )
        )
        self.next_seq += 1

    def by_key(self, model: RecordType, key: str) -> Record | None:
        # One SELECT per lookup, as a naive loop does (a group is looked up once per link).
        statement = select(model).where(
            col(model.school_id) == self.school_id, col(model.esis_key) == key
        )
        return cast(Record | None, self.session.scalars(statement).first())

    def record(self, model: RecordType, entity: str, key: str, values: dict[str, Any]) -> None:
        row = self.by_key(model, key)
        if row is None:
            new = model(
                school_id=self.school_id,
                id=uuid.uuid4(),
                source="esis",
                esis_key=key,
                esis_values=values,
                local_edits={},
                created_at=self.now,
                updated_at=self.now,
                **{name: _to_db(name, value) for name, value in values.items()},
            )
            self.session.add(new)
            self.event(entity, new.id, "created", {k: {"after": v} for k, v in values.items()})
            self.session.flush()
            self.count(f"{entity}.added")
            return
        changes: dict[str, Any] = {}
        for name, esis_value in values.items():
            ours = _from_db(getattr(row, name))
            if ours == esis_value:
                continue
            if entity == "group" or name in FOLLOW:
                setattr(row, name, _to_db(name, esis_value))
                changes[name] = {"before": ours, "after": esis_value}
            else:
                self.drift(entity, row.id, name, ours, esis_value)
        if row.esis_values != values:
            row.esis_values = values
        if row.missing_in_esis_since is not None:
            row.missing_in_esis_since = None
        if changes:
            row.updated_at = self.now
            row.version += 1
            self.event(entity, row.id, "updated", changes)
            self.count(f"{entity}.updated")
        self.session.flush()

    def drift(
        self, entity: str, record_id: uuid.UUID, name: str, ours: Any, esis_value: Any
    ) -> None:
        statement = select(DriftItem).where(
            col(DriftItem.school_id) == self.school_id,
            col(DriftItem.entity) == entity,
            col(DriftItem.record_id) == record_id,
            col(DriftItem.field) == name,
        )
        item = self.session.scalars(statement).first()
        if item is None:
            self.session.add(
                DriftItem(
                    school_id=self.school_id,
                    entity=entity,
                    record_id=record_id,
                    field=name,
                    our_value=ours,
                    esis_value=esis_value,
                    first_seen_at=self.now,
                    last_seen_at=self.now,
                    first_run_id=self.run_id,
                    last_run_id=self.run_id,
                )
            )
            self.event(
                entity, record_id, "drift-opened", {name: {"ours": ours, "esis": esis_value}}
            )
            self.count(f"{entity}.drift_opened")
        else:
            item.esis_value = esis_value
            item.last_seen_at = self.now
            item.last_run_id = self.run_id

    def link(
        self,
        model: type[StudentGroup] | type[StudentGuardian] | type[StaffGroup],
        name: str,
        ends: dict[str, uuid.UUID],
        values: dict[str, Any],
    ) -> None:
        statement = select(model).where(col(model.school_id) == self.school_id)
        for column, value in ends.items():
            statement = statement.where(getattr(model, column) == value)
        row: SQLModel | None = self.session.scalars(statement).first()
        if row is None:
            data: dict[str, Any] = {
                "school_id": self.school_id,
                "id": uuid.uuid4(),
                "source": "esis",
                "esis_values": values or None,
                "local_edits": {},
                "created_at": self.now,
                "updated_at": self.now,
                **ends,
                **values,
            }
            new = model(**data)
            self.session.add(new)
            self.event(name, new.id, "created", {k: {"after": str(v)} for k, v in ends.items()})
            self.session.flush()
            self.count(f"{name}.added")
            return
        for column, value in values.items():
            if getattr(row, column) != value:
                setattr(row, column, value)
        self.session.flush()

    def mark_missing(self, model: RecordType, entity: str, keys: set[str]) -> None:
        statement = select(model).where(
            col(model.school_id) == self.school_id,
            col(model.source) == "esis",
            col(model.deleted_at).is_(None),
            col(model.missing_in_esis_since).is_(None),
        )
        rows: list[Record] = list(self.session.scalars(statement))
        for row in rows:
            if row.esis_key not in keys:
                row.missing_in_esis_since = self.now
                self.event(entity, row.id, "missing-in-esis", {})
                self.session.flush()
                self.count(f"{entity}.missing")


def _values(item: Any, names: tuple[str, ...]) -> dict[str, Any]:
    dumped: dict[str, Any] = item.model_dump(mode="json", include=set(names))
    return {name: dumped.get(name) for name in names}


def _required(row: Record | None, what: str) -> uuid.UUID:
    if row is None:
        raise LookupError(f"{what} not found")
    return row.id


def apply(snapshot: EsisSnapshot, loop: Loop) -> None:
    """Every record and link of `snapshot`, one at a time."""
    year = snapshot.school.school_year
    for g in snapshot.groups:
        loop.record(Group, "group", g.key, {**_values(g, GROUP_FIELDS), "school_year": year})
    for s in snapshot.students:
        loop.record(Student, "student", s.key, _values(s, STUDENT_FIELDS))
    for p in snapshot.guardians:
        loop.record(Guardian, "guardian", p.key, _values(p, GUARDIAN_FIELDS))
    for m in snapshot.staff:
        loop.record(Staff, "staff", m.key, _values(m, STAFF_FIELDS))

    for s in snapshot.students:
        for group_key in [*([s.group] if s.group else []), *s.composite_groups]:
            ends = {
                "student_id": _required(loop.by_key(Student, s.key), s.key),
                "group_id": _required(loop.by_key(Group, group_key), group_key),
            }
            loop.link(StudentGroup, "student_group", ends, {})
    for p in snapshot.guardians:
        for link in p.students:
            ends = {
                "student_id": _required(loop.by_key(Student, link.student), link.student),
                "guardian_id": _required(loop.by_key(Guardian, p.key), p.key),
            }
            relation = link.relation.value if link.relation else None
            loop.link(StudentGuardian, "student_guardian", ends, {"relation": relation})
    for m in snapshot.staff:
        for group_key in m.groups:
            ends = {
                "staff_id": _required(loop.by_key(Staff, m.key), m.key),
                "group_id": _required(loop.by_key(Group, group_key), group_key),
            }
            loop.link(StaffGroup, "staff_group", ends, {})

    loop.mark_missing(Group, "group", {g.key for g in snapshot.groups})
    loop.mark_missing(Student, "student", {s.key for s in snapshot.students})
    loop.mark_missing(Guardian, "guardian", {g.key for g in snapshot.guardians})
    loop.mark_missing(Staff, "staff", {s.key for s in snapshot.staff})


def sync(*, sessions: sessionmaker[Session], school_id: uuid.UUID, body: bytes) -> dict[str, int]:
    """Parse `body` and apply it record by record in one transaction; the counts."""
    snapshot = parse_json(body)
    with sessions() as session:
        begin_write(session)
        school = session.get_one(School, school_id, with_for_update=True)
        loop = Loop(
            session=session,
            school_id=school_id,
            run_id=uuid.uuid4(),
            now=utcnow(),
            next_seq=school.event_seq + 1,
        )
        apply(snapshot, loop)
        school.event_seq = loop.next_seq - 1
        if school.current_school_year is None:
            school.current_school_year = snapshot.school.school_year
        session.commit()
    return dict(sorted(loop.counts.items()))
