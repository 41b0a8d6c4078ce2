"""Strategies and a runner for the merge properties (test_merge_properties.py).

A `World` is ESIS's side of one school: every record ESIS ever listed, and which of them the
current snapshot lists. Steps are drawn as small abstract operations (an index, a value) and
interpreted against the World, so every snapshot is valid by construction and shrinks well.
A `Runner` drives the real API: it makes a fresh school per example (each hypothesis example
must start clean, the `db` fixture only cleans between test functions), activates it, pushes
the World's snapshots, and simulates the roster API's local edits with SQL.
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import strategies as st
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import select

from app.schools.models import School
from app.sync import repository
from app.sync.service import GROUP, GUARDIAN, STAFF, STUDENT, EntitySpec, Mode
from tests.factories import SchoolKeys, auth, make_school

Json = dict[str, Any]

YEAR = "2026-2027"
SPECS: dict[str, EntitySpec] = {
    "group": GROUP,
    "student": STUDENT,
    "guardian": GUARDIAN,
    "staff": STAFF,
}
ENTITY_TABLES = {name: spec.table for name, spec in SPECS.items()}
LINK_TABLES = ("student_group", "student_guardian", "staff_group")
# The snapshot's defaults for fields a record may leave out.
DEFAULTS: Json = {"roles": [], "active": True, "is_composite": False}

_SCHOOLS = itertools.count()


def unique_brin() -> str:
    n = next(_SCHOOLS)
    return f"{n % 100:02d}{chr(65 + n // 100 % 26)}{chr(65 + n // 2600 % 26)}"


def jsonable(value: Any) -> Any:
    """A database value as the merge compares it with the snapshot (dates as ISO strings)."""
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return value


def protected_fields(entity: str) -> list[str]:
    return [f for f, mode in SPECS[entity].fields.items() if mode is Mode.PROTECTED]


# --- values ------------------------------------------------------------------------------

NAMES = st.sampled_from(["Jansen", "Bakker", "Visser", "Smit", "Mulder", "Bos", "Dekker"])
GIVEN = st.sampled_from(["Anna", "Sanne", "Daan", "Noah", "Emma", "Luuk"])
INITIALS = st.sampled_from(["A", "B.J.", "M", "P"])
EMAILS = st.builds(
    "{}@{}.nl".format,
    st.sampled_from(["anna", "ouder", "p.bakker", "info", "x1"]),
    st.sampled_from(["example", "school", "mail"]),
)
PHONES = st.sampled_from(["+31612345678", "0201234567", "+31 6 87654321"])
DATES = st.dates(dt.date(2014, 1, 1), dt.date(2021, 12, 31)).map(dt.date.isoformat)
GENDERS = st.sampled_from(["unknown", "male", "female", "unspecified"])
ROLES = st.lists(st.sampled_from(["leerkracht", "ib", "directie"]), max_size=2, unique=True)
RELATIONS = st.sampled_from(["father", "mother", "caregiver", "legal_guardian", "other", None])


def _maybe(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | values


STUDENT_SEED = st.fixed_dictionaries(
    {
        "last_name": NAMES,
        "given_name": _maybe(GIVEN),
        "birth_date": DATES,
        "gender": GENDERS,
        "year_level": st.integers(1, 8),
    }
)
GUARDIAN_SEED = st.fixed_dictionaries(
    {"last_name": NAMES, "initials": _maybe(INITIALS), "email": EMAILS, "phone": _maybe(PHONES)}
)
STAFF_SEED = st.fixed_dictionaries(
    {"last_name": NAMES, "initials": INITIALS, "email": _maybe(EMAILS), "roles": ROLES}
)

# ESIS-side changes a snapshot may make, per entity and field.
ESIS_EDITS: dict[tuple[str, str], st.SearchStrategy[Any]] = {
    ("student", "last_name"): NAMES,
    ("student", "given_name"): _maybe(GIVEN),
    ("student", "email"): _maybe(EMAILS),
    ("student", "birth_date"): DATES,
    ("student", "gender"): GENDERS,
    ("student", "year_level"): st.integers(1, 8),
    ("guardian", "last_name"): NAMES,
    ("guardian", "given_name"): _maybe(GIVEN),
    ("guardian", "email"): _maybe(EMAILS),
    ("guardian", "phone"): _maybe(PHONES),
    ("staff", "last_name"): NAMES,
    ("staff", "email"): _maybe(EMAILS),
    ("staff", "roles"): ROLES,
    ("staff", "active"): st.booleans(),
    ("group", "name"): st.sampled_from(["Groep 3", "Groep 4a", "Groep 5", "Leesgroep"]),
}
# What the roster API will let a user (school admin, parent) change.
LOCAL_EDITS: dict[tuple[str, str], st.SearchStrategy[Any]] = {
    ("student", "last_name"): NAMES,
    ("student", "given_name"): GIVEN,
    ("student", "email"): EMAILS,
    ("guardian", "email"): EMAILS,
    ("guardian", "phone"): PHONES,
    ("guardian", "last_name"): NAMES,
    ("guardian", "given_name"): GIVEN,
    ("staff", "email"): EMAILS,
    ("staff", "last_name"): NAMES,
}


# --- steps -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Edit:
    """ESIS changes one field of a record it lists."""

    entity: str
    field: str
    index: int
    value: Any


@dataclass(frozen=True)
class AddStudent:
    """A new student with a new guardian (and maybe an existing guardian as well)."""

    group: int
    student: Json
    guardian: Json
    sibling_of: int | None


@dataclass(frozen=True)
class Remove:
    """ESIS stops listing a student (and guardians left without students) or staff member."""

    entity: str
    index: int


@dataclass(frozen=True)
class Restore:
    """ESIS lists a removed student or staff member again."""

    entity: str
    index: int


@dataclass(frozen=True)
class Move:
    """A student moves to another class (non-composite group)."""

    index: int
    group: int


@dataclass(frozen=True)
class Relink:
    """ESIS changes a guardian's relation to a student."""

    index: int
    relation: str | None


@dataclass(frozen=True)
class Join:
    """A student joins or leaves the composite group (when there is one)."""

    index: int


@dataclass(frozen=True)
class Teach:
    """A staff member starts or stops teaching a group."""

    index: int
    group: int


@dataclass(frozen=True)
class Revert:
    """ESIS takes back its changes to a record it changed: every value as first listed."""

    entity: str
    index: int


@dataclass(frozen=True)
class Adopt:
    """ESIS catches up with a local edit: it now sends the value a user set here."""

    index: int


Mutation = Edit | AddStudent | Remove | Restore | Move | Relink | Join | Teach | Revert | Adopt


@dataclass(frozen=True)
class Push:
    """A snapshot: the previous one with these mutations (none: only generated_at differs)."""

    mutations: tuple[Mutation, ...]


@dataclass(frozen=True)
class LocalEdit:
    """What the roster PATCH will do: set a field and mark it edited locally."""

    entity: str
    field: str
    index: int
    value: Any


Step = Push | LocalEdit

INDEX = st.integers(0, 7)


def _edits(table: dict[tuple[str, str], st.SearchStrategy[Any]], cls: type[Any]) -> Any:
    """Pick a field, then a value. (A flat one_of would weigh each field like a step kind.)"""
    return st.sampled_from(sorted(table)).flatmap(
        lambda which: st.builds(cls, st.just(which[0]), st.just(which[1]), INDEX, table[which])
    )


MUTATIONS: st.SearchStrategy[Mutation] = st.one_of(
    _edits(ESIS_EDITS, Edit),
    st.builds(AddStudent, INDEX, STUDENT_SEED, GUARDIAN_SEED, _maybe(INDEX)),
    st.builds(Remove, st.sampled_from(["student", "student", "staff"]), INDEX),
    st.builds(Restore, st.sampled_from(["student", "staff"]), INDEX),
    st.builds(Move, INDEX, INDEX),
    st.builds(Relink, INDEX, RELATIONS),
    st.builds(Join, INDEX),
    st.builds(Teach, INDEX, INDEX),
    st.builds(Revert, st.sampled_from(["student", "guardian", "staff", "group"]), INDEX),
    st.builds(Adopt, INDEX),
)
STEP: st.SearchStrategy[Step] = st.one_of(
    st.builds(Push, st.lists(MUTATIONS, min_size=1, max_size=4).map(tuple)),
    _edits(LOCAL_EDITS, LocalEdit),
)
# The length drawn uniformly first: st.lists would mostly make one or two steps.
STEPS: st.SearchStrategy[list[Step]] = st.sampled_from(range(1, 6)).flatmap(
    lambda n: st.lists(STEP, min_size=n, max_size=n)
)


# --- the school ESIS knows ---------------------------------------------------------------


@dataclass
class World:
    """ESIS's records of one school; `absent` holds the student and staff keys not listed now.

    Guardians are listed exactly when at least one of their students is.
    """

    groups: dict[str, Json]
    students: dict[str, Json]
    guardians: dict[str, Json]
    links: dict[str, dict[str, str | None]]  # guardian key -> student key -> relation
    staff: dict[str, Json]
    absent: set[str] = field(default_factory=set)
    serial: int = 0
    # record key -> the record as ESIS first listed it (keys are unique across entities)
    origins: dict[str, Json] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for entity in ("group", "student", "guardian", "staff"):
            for key, record in self.records(entity).items():
                self.origins.setdefault(key, copy.deepcopy(record))

    def listed(self, entity: str) -> list[str]:
        if entity == "group":
            return sorted(self.groups)
        if entity == "guardian":
            students = set(self.listed("student"))
            return sorted(g for g, links in self.links.items() if students & links.keys())
        return sorted(k for k in self.records(entity) if k not in self.absent)

    def records(self, entity: str) -> dict[str, Json]:
        tables = {
            "group": self.groups,
            "student": self.students,
            "guardian": self.guardians,
            "staff": self.staff,
        }
        return tables[entity]

    def classes(self) -> list[str]:
        return sorted(k for k, g in self.groups.items() if not g.get("is_composite"))

    def listed_links(self) -> list[tuple[str, str]]:
        students = set(self.listed("student"))
        return sorted((g, s) for g, links in self.links.items() for s in links if s in students)

    def snapshot(self, *, brin: str, generated_at: dt.datetime) -> Json:
        students = set(self.listed("student"))
        return copy.deepcopy(
            {
                "school": {
                    "brin": brin,
                    "branch": "00",
                    "school_year": YEAR,
                    "generated_at": generated_at.isoformat(),
                },
                "groups": [self.groups[k] for k in self.listed("group")],
                "students": [self.students[k] for k in self.listed("student")],
                "guardians": [
                    {
                        **self.guardians[g],
                        "students": [
                            {"student": s, "relation": r}
                            for s, r in sorted(self.links[g].items())
                            if s in students
                        ],
                    }
                    for g in self.listed("guardian")
                ],
                "staff": [self.staff[k] for k in self.listed("staff")],
            }
        )

    def _next(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}{self.serial:03d}"

    def mutate(self, mutation: Mutation) -> None:
        """Apply one mutation; one that finds nothing to act on changes nothing."""
        if isinstance(mutation, Edit):
            keys = self.listed(mutation.entity)
            if keys:
                record = self.records(mutation.entity)[keys[mutation.index % len(keys)]]
                record[mutation.field] = mutation.value
        elif isinstance(mutation, AddStudent):
            classes = self.classes()
            guardians = self.listed("guardian")
            key, guardian = self._next("S"), self._next("V")
            self.students[key] = {
                **mutation.student,
                "key": key,
                "group": classes[mutation.group % len(classes)],
                "composite_groups": [],
            }
            self.guardians[guardian] = {**mutation.guardian, "key": guardian}
            self.origins[key] = copy.deepcopy(self.students[key])
            self.origins[guardian] = copy.deepcopy(self.guardians[guardian])
            self.links[guardian] = {key: "mother"}
            if mutation.sibling_of is not None and guardians:
                self.links[guardians[mutation.sibling_of % len(guardians)]][key] = "father"
        elif isinstance(mutation, Remove):
            keys = self.listed(mutation.entity)
            if keys:
                self.absent.add(keys[mutation.index % len(keys)])
        elif isinstance(mutation, Restore):
            gone = sorted(k for k in self.records(mutation.entity) if k in self.absent)
            if gone:
                self.absent.discard(gone[mutation.index % len(gone)])
        elif isinstance(mutation, Move):
            keys = self.listed("student")
            if keys:
                student = self.students[keys[mutation.index % len(keys)]]
                others = [g for g in self.classes() if g != student["group"]]
                if others:
                    student["group"] = others[mutation.group % len(others)]
        elif isinstance(mutation, Relink):
            pairs = self.listed_links()
            if pairs:
                guardian, student_key = pairs[mutation.index % len(pairs)]
                self.links[guardian][student_key] = mutation.relation
        elif isinstance(mutation, Revert):
            keys = [
                k
                for k in self.listed(mutation.entity)
                if self.records(mutation.entity)[k] != self.origins[k]
            ]
            if keys:
                key = keys[mutation.index % len(keys)]
                self.records(mutation.entity)[key] = copy.deepcopy(self.origins[key])
        elif isinstance(mutation, Join):
            keys = self.listed("student")
            composites = sorted(k for k, g in self.groups.items() if g.get("is_composite"))
            if keys and composites:
                student = self.students[keys[mutation.index % len(keys)]]
                student["composite_groups"] = [] if student["composite_groups"] else composites
        elif isinstance(mutation, Teach):
            keys = self.listed("staff")
            if keys:
                member = self.staff[keys[mutation.index % len(keys)]]
                group = self.listed("group")[mutation.group % len(self.groups)]
                taught = set(member["groups"]) ^ {group}
                member["groups"] = sorted(taught)


@st.composite
def worlds(draw: st.DrawFn) -> World:
    """A small school: 2-8 students, 1-3 groups (maybe a composite one), 0-3 staff."""
    classes = [f"G{i}" for i in range(1, draw(st.integers(1, 2)) + 1)]
    groups: dict[str, Json] = {
        key: {"key": key, "name": f"Groep {4 + i}", "year_level": 4 + i}
        for i, key in enumerate(classes)
    }
    composite = draw(st.booleans())
    if composite:
        groups["L1"] = {"key": "L1", "name": "Leesgroep", "is_composite": True}
    seeds = draw(st.lists(STUDENT_SEED, min_size=2, max_size=8))
    students: dict[str, Json] = {}
    for i, seed in enumerate(seeds):
        key = f"S{900 + i}"
        students[key] = {
            **seed,
            "key": key,
            "group": classes[draw(st.integers(0, len(classes) - 1))],
            "composite_groups": ["L1"] if composite and draw(st.booleans()) else [],
        }
    keys = sorted(students)
    count = draw(st.integers(1, len(keys)))
    guardians = {f"V{900 + i}": {**draw(GUARDIAN_SEED), "key": f"V{900 + i}"} for i in range(count)}
    names = sorted(guardians)
    links: dict[str, dict[str, str | None]] = {g: {} for g in names}
    for i, student in enumerate(keys):
        # Every guardian gets a student (i % count covers them all); some students two guardians.
        links[names[i % count]][student] = draw(RELATIONS)
        if count > 1 and draw(st.booleans()):
            links[names[(i + 1) % count]][student] = draw(RELATIONS)
    staff: dict[str, Json] = {}
    for i, seed in enumerate(draw(st.lists(STAFF_SEED, max_size=3))):
        key = f"LK{90 + i}"
        taught = draw(st.lists(st.sampled_from(sorted(groups)), max_size=2, unique=True))
        staff[key] = {**seed, "key": key, "groups": taught, "active": True}
    return World(
        groups=groups,
        students=students,
        guardians=guardians,
        links=links,
        staff=staff,
    )


# --- driving the API ---------------------------------------------------------------------


@dataclass
class Runner:
    """One school through the real API: activated, then fed the World's snapshots."""

    client: TestClient
    db: sessionmaker[Session]
    world: World
    brin: str
    keys: SchoolKeys
    school_id: uuid.UUID
    snapshot: Json = field(default_factory=dict)
    # (entity, record id, field) -> the value a local edit set
    local: dict[tuple[str, uuid.UUID, str], Any] = field(default_factory=dict)
    local_keys: dict[tuple[str, uuid.UUID, str], str] = field(default_factory=dict)
    # (entity, key) -> the ESIS values of the snapshot that first brought the record in
    first_seen: dict[tuple[str, str], Json] = field(default_factory=dict)
    pushes: int = 0

    @classmethod
    def activated(cls, client: TestClient, db: sessionmaker[Session], world: World) -> Runner:
        brin = unique_brin()
        keys = make_school(client, db, brin=brin, name=f"Property school {brin}")
        with db() as session:
            school = session.scalars(select(School).where(School.key == keys.key)).one()
        # The World changes as the steps are taken: an explicit @example must not see that.
        runner = cls(
            client=client,
            db=db,
            world=copy.deepcopy(world),
            brin=brin,
            keys=keys,
            school_id=school.id,
        )
        stored = runner.push()
        assert stored["status"] == "stored", stored
        response = client.post(
            f"/api/v1/schools/{keys.key}/esis/activation", headers=auth(keys.admin)
        )
        assert response.status_code == 201, response.text
        assert response.json()["status"] == "applied", response.text
        runner._remember_first_seen()
        return runner

    def push(self) -> Json:
        """Push the World's current snapshot with a generated_at of its own."""
        self.pushes += 1
        generated = dt.datetime(2026, 11, 2, 15, 0, tzinfo=dt.UTC) + dt.timedelta(
            minutes=self.pushes
        )
        self.snapshot = self.world.snapshot(brin=self.brin, generated_at=generated)
        response = self.client.post(
            f"/api/v1/schools/{self.keys.key}/esis/snapshots",
            json=self.snapshot,
            headers=auth(self.keys.esis),
        )
        assert response.status_code == 201, response.text
        run: Json = response.json()
        if run["status"] == "applied":
            self._remember_first_seen()
        return run

    def step(self, step: Step) -> Json | None:
        """Take one step; a pushed snapshot must be applied, and its run is returned."""
        if isinstance(step, LocalEdit):
            self.local_edit(step)
            return None
        for mutation in step.mutations:
            if isinstance(mutation, Adopt):
                self.adopt(mutation)
            else:
                self.world.mutate(mutation)
        run = self.push()
        assert run["status"] == "applied", run
        return run

    def local_edit(self, edit: LocalEdit) -> None:
        """Exactly what the roster PATCH will do: the value, the local-edit mark, a version."""
        t = repository.table(ENTITY_TABLES[edit.entity])
        now = dt.datetime.now(dt.UTC)
        with self.db.begin() as session:
            rows = (
                session.execute(
                    t.select().where(t.c.school_id == self.school_id).order_by(t.c.esis_key)
                )
                .mappings()
                .all()
            )
            if not rows:
                return
            row = rows[edit.index % len(rows)]
            edits = {
                **(row["local_edits"] or {}),
                edit.field: {"by": "key:test", "at": now.isoformat()},
            }
            session.execute(
                update(t)
                .where(t.c.school_id == self.school_id, t.c.id == row["id"])
                .values(
                    {
                        edit.field: edit.value,
                        "local_edits": edits,
                        "version": row["version"] + 1,
                        "updated_at": now,
                    }
                )
            )
        self.local[(edit.entity, row["id"], edit.field)] = edit.value
        self.local_keys[(edit.entity, row["id"], edit.field)] = row["esis_key"]

    def adopt(self, mutation: Adopt) -> None:
        edits = sorted(self.local.items(), key=lambda item: str(item[0]))
        if edits:
            (entity, record_id, name), value = edits[mutation.index % len(edits)]
            key = self.local_keys[(entity, record_id, name)]
            self.world.records(entity)[key][name] = value

    def _remember_first_seen(self) -> None:
        for entity in ("student", "guardian", "staff"):
            for record in self.snapshot[_plural(entity)]:
                self.first_seen.setdefault((entity, record["key"]), esis_values(entity, record))

    # --- reading back ---------------------------------------------------------------------

    def rows(self, table: str) -> list[Json]:
        t = repository.table(table)
        with self.db() as session:
            result = session.execute(t.select().where(t.c.school_id == self.school_id))
            return [dict(m) for m in result.mappings()]

    def runs(self) -> list[Json]:
        response = self.client.get(
            f"/api/v1/schools/{self.keys.key}/sync-runs",
            params={"limit": 1000},
            headers=auth(self.keys.reader),
        )
        assert response.status_code == 200, response.text
        body: Json = response.json()
        assert body["next_cursor"] is None
        items: list[Json] = body["items"]
        return items

    def listed(self, entity: str) -> dict[str, Json]:
        """The records of `entity` in the latest pushed snapshot, by key."""
        return {r["key"]: r for r in self.snapshot[_plural(entity)]}

    def listed_pairs(self, table: str) -> set[tuple[str, str]]:
        """The links of the latest pushed snapshot, as pairs of ESIS keys."""
        snap = self.snapshot
        if table == "student_group":
            return {
                (s["key"], g)
                for s in snap["students"]
                for g in [s["group"], *s["composite_groups"]]
            }
        if table == "student_guardian":
            return {
                (link["student"], g["key"]) for g in snap["guardians"] for link in g["students"]
            }
        return {(m["key"], g) for m in snap["staff"] for g in m["groups"]}

    def link_keys(self, table: str) -> dict[uuid.UUID, tuple[str, str]]:
        """Link id -> the pair of ESIS keys it joins."""
        ends = {
            "student_group": ("student_id", "student", "group_id", "school_group"),
            "student_guardian": ("student_id", "student", "guardian_id", "guardian"),
            "staff_group": ("staff_id", "staff", "group_id", "school_group"),
        }[table]
        left = {r["id"]: r["esis_key"] for r in self.rows(ends[1])}
        right = {r["id"]: r["esis_key"] for r in self.rows(ends[3])}
        return {r["id"]: (left[r[ends[0]]], right[r[ends[2]]]) for r in self.rows(table)}

    def open_drift(self) -> dict[tuple[str, uuid.UUID, str], Json]:
        return {(d["entity"], d["record_id"], d["field"]): d for d in self.rows("drift_item")}


def _plural(entity: str) -> str:
    return "staff" if entity == "staff" else f"{entity}s"


def esis_values(entity: str, record: Json) -> Json:
    """A snapshot record's values for the entity's ESIS field set, defaults filled in."""
    return {f: record.get(f, DEFAULTS.get(f)) for f in SPECS[entity].fields if f != "school_year"}


def without(row: Json, columns: Iterable[str]) -> Json:
    return {k: v for k, v in row.items() if k not in columns}
