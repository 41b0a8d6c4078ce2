"""Properties of the merge (R4-R6) over random schools and random sequences of steps.

Every example makes its own school through the real API, activates it (policy `ignore`),
then takes 1-5 steps: a snapshot (the previous one with random mutations) or a local edit
(what the roster PATCH will do, done in SQL). The run ends with a snapshot, so that the
latest snapshot has seen every local edit. Helpers: tests/property_helpers.py.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, example, given, settings
from sqlalchemy.orm import Session, sessionmaker

from app.sync import repository
from tests.property_helpers import (
    ENTITY_TABLES,
    LINK_TABLES,
    SPECS,
    STEPS,
    AddStudent,
    Adopt,
    Edit,
    Json,
    LocalEdit,
    Move,
    Push,
    Relink,
    Remove,
    Restore,
    Revert,
    Runner,
    Step,
    World,
    esis_values,
    jsonable,
    protected_fields,
    without,
    worlds,
)

SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
CHANGE_COUNTS = ("added", "updated", "drift_opened", "drift_closed", "missing", "reappeared")
# Counts a merge that changes nothing may still report.
QUIET_COUNTS = ("unchanged",)
# Columns a merge that changes nothing may still touch. A drift item's `last_run_id` is not
# one of them: it must name the run that last saw the item (checked on its own below).
VOLATILE = ("updated_at", "last_seen_at")
SEEN_BY = ("last_run_id",)


def _run(client: TestClient, db: sessionmaker[Session], world: World, steps: list[Step]) -> Runner:
    """Activate and take every step, ending with a snapshot."""
    runner = Runner.activated(client, db, world)
    for step in steps:
        runner.step(step)
    runner.push()
    return runner


def _contents(runner: Runner) -> dict[str, list[Json]]:
    return {
        name: sorted(
            (without(row, (*VOLATILE, *SEEN_BY)) for row in runner.rows(name)),
            key=lambda r: str(r["id"]),
        )
        for name in repository.TABLES
    }


def _check_drift_seen_by(before: dict[uuid.UUID, Json], after: list[Json], run_id: str) -> None:
    """A drift item the run saw again names that run; one it did not see keeps its run."""
    for row in after:
        assert row["first_run_id"] is not None, row
        old = before[row["id"]]
        seen_again = row["last_seen_at"] != old["last_seen_at"]
        expected = run_id if seen_again else str(old["last_run_id"])
        assert str(row["last_run_id"]) == expected, (row, old, run_id)


def _two_classes() -> World:
    """Two students in G1 and G2, each with a guardian; a teacher of G1."""
    return World(
        groups={
            "G1": {"key": "G1", "name": "Groep 4", "year_level": 4},
            "G2": {"key": "G2", "name": "Groep 5", "year_level": 5},
        },
        students={
            key: {"key": key, "last_name": "Jansen", "group": group, "composite_groups": []}
            for key, group in (("S900", "G1"), ("S901", "G2"))
        },
        guardians={
            key: {"key": key, "last_name": "Jansen", "email": "anna@example.nl"}
            for key in ("V900", "V901")
        },
        links={"V900": {"S900": "mother"}, "V901": {"S901": "father"}},
        staff={"LK90": {"key": "LK90", "last_name": "Visser", "groups": ["G1"], "active": True}},
    )


# Scenarios every run takes besides the random ones: the random search rarely hits a change
# that ESIS takes back, or ESIS adopting a local edit, within its small budget.
SCENARIOS: list[list[Step]] = [
    [
        Push((Edit("guardian", "email", 0, "x1@mail.nl"), Edit("student", "gender", 1, "male"))),
        Push((Revert("guardian", 0), Revert("student", 0))),
    ],
    [LocalEdit("guardian", "email", 0, "info@school.nl"), Push(()), Push((Adopt(0),))],
    [
        Push((Move(1, 0), Relink(0, "other"), Edit("student", "birth_date", 0, "2015-05-05"))),
        LocalEdit("student", "last_name", 0, "Bos"),
        Push((Remove("student", 0), Edit("staff", "active", 0, False))),
        Push(
            (Restore("student", 0), AddStudent(0, {"last_name": "Smit"}, {"last_name": "Bos"}, 0))
        ),
    ],
]


def scenarios(test: Callable[..., None]) -> Callable[..., None]:
    for steps in SCENARIOS:
        test = example(world=_two_classes(), steps=steps)(test)
    return test


@SETTINGS
@scenarios
@given(world=worlds(), steps=STEPS)
def test_r4_r6_same_snapshot_twice_changes_nothing(
    client: TestClient, db: sessionmaker[Session], world: World, steps: list[Step]
) -> None:
    runner = _run(client, db, world, steps)
    before = _contents(runner)
    drift_before = {row["id"]: row for row in runner.rows("drift_item")}

    again = runner.push()  # the same snapshot; only generated_at differs

    assert again["status"] == "applied"
    assert again["counts"], "the run counted nothing at all"
    for entity, counts in again["counts"].items():
        for what in CHANGE_COUNTS:
            assert counts[what] == 0, (entity, what, again["counts"])
        # Nor anything else (moved, removed, ...): only `unchanged` may be non-zero.
        noisy = {k: v for k, v in counts.items() if v and k not in QUIET_COUNTS}
        assert not noisy, (entity, noisy)
    assert _contents(runner) == before
    _check_drift_seen_by(drift_before, runner.rows("drift_item"), again["id"])


@SETTINGS
@scenarios
@given(world=worlds(), steps=STEPS)
def test_r5_ignore_no_local_edit_takes_an_esis_value(
    client: TestClient, db: sessionmaker[Session], world: World, steps: list[Step]
) -> None:
    runner = Runner.activated(client, db, world)
    for step in steps:
        runner.step(step)
        _check_local_edits_kept(runner)
    runner.push()
    _check_local_edits_kept(runner)


def _check_local_edits_kept(runner: Runner) -> None:
    """Edited fields hold the local value; under `ignore`, the rest what ESIS first sent."""
    edited = 0
    for entity in ("student", "guardian", "staff"):
        for row in runner.rows(ENTITY_TABLES[entity]):
            first = runner.first_seen[(entity, row["esis_key"])]
            for name in protected_fields(entity):
                key = (entity, row["id"], name)
                if key in runner.local:
                    edited += 1
                    assert name in row["local_edits"], (entity, row["esis_key"], name)
                    assert jsonable(row[name]) == runner.local[key], (entity, row, name)
                else:
                    assert jsonable(row[name]) == first[name], (entity, row, name)
    assert edited == len(runner.local)


@SETTINGS
@scenarios
@given(world=worlds(), steps=STEPS)
def test_r6_no_record_disappears_and_absent_ones_are_marked_missing(
    client: TestClient, db: sessionmaker[Session], world: World, steps: list[Step]
) -> None:
    runner = Runner.activated(client, db, world)
    seen: dict[str, set[uuid.UUID]] = {}
    for step in [*steps, None]:
        if step is None:
            runner.push()
        else:
            runner.step(step)
        for table in (*ENTITY_TABLES.values(), *LINK_TABLES):
            ids = {row["id"] for row in runner.rows(table)}
            assert seen.get(table, set()) <= ids, f"{table}: rows disappeared"
            seen[table] = ids
        _check_missing_marks(runner)


def _check_missing_marks(runner: Runner) -> None:
    for entity, table in ENTITY_TABLES.items():
        listed = runner.listed(entity)
        rows = runner.rows(table)
        assert set(listed) <= {row["esis_key"] for row in rows}, f"{entity}: not added (R4)"
        for row in rows:
            assert row["source"] == "esis"
            assert row["deleted_at"] is None
            absent = row["esis_key"] not in listed
            assert (row["missing_in_esis_since"] is not None) == absent, (entity, row)
    for table in LINK_TABLES:
        listed_pairs = runner.listed_pairs(table)
        links = runner.link_keys(table)
        for row in runner.rows(table):
            absent = links[row["id"]] not in listed_pairs
            assert (row["missing_in_esis_since"] is not None) == absent, (table, links[row["id"]])


@SETTINGS
@scenarios
@given(world=worlds(), steps=STEPS)
def test_r5_every_ignored_change_is_visible_as_drift(
    client: TestClient, db: sessionmaker[Session], world: World, steps: list[Step]
) -> None:
    runner = Runner.activated(client, db, world)
    for step in steps:
        if runner.step(step) is not None:
            _check_differences_are_drift(runner)
    runner.push()
    _check_differences_are_drift(runner)


def _check_differences_are_drift(runner: Runner) -> None:
    drift = runner.open_drift()
    differences = 0
    for entity, table in ENTITY_TABLES.items():
        listed = runner.listed(entity)
        rows = {row["esis_key"]: row for row in runner.rows(table)}
        for key, record in listed.items():
            row = rows[key]
            theirs = esis_values(entity, record)
            for name in SPECS[entity].fields:
                if name == "school_year":
                    continue
                if jsonable(row[name]) != theirs[name]:
                    item = drift.get((entity, row["id"], name))
                    assert item is not None, (entity, key, name, row[name], theirs[name])
                    assert item["esis_value"] == theirs[name], (entity, key, name, item)
                    differences += 1
    # A student's move to another class is drift too, not a silent move.
    groups = {row["id"]: row["esis_key"] for row in runner.rows("school_group")}
    students = {row["id"]: row for row in runner.rows("student")}
    memberships: dict[str, set[str]] = {}
    for link in runner.rows("student_group"):
        memberships.setdefault(students[link["student_id"]]["esis_key"], set()).add(
            groups[link["group_id"]]
        )
    by_key = {row["esis_key"]: row for row in students.values()}
    for key, record in runner.listed("student").items():
        if record["group"] not in memberships.get(key, set()):
            item = drift.get(("student", by_key[key]["id"], "group"))
            assert item is not None, (key, record["group"], memberships.get(key))
            assert item["esis_value"] == record["group"], (key, item)
            differences += 1
    # A guardian's relation is the link's own attribute: ignored changes are drift as well.
    pairs = runner.link_keys("student_guardian")
    relation = {
        (link["student"], g["key"]): link["relation"]
        for g in runner.snapshot["guardians"]
        for link in g["students"]
    }
    for row in runner.rows("student_guardian"):
        pair = pairs[row["id"]]
        if pair in relation and row["relation"] != relation[pair]:
            item = drift.get(("student_guardian", row["id"], "relation"))
            assert item is not None, (pair, row["relation"], relation[pair])
            assert item["esis_value"] == relation[pair]
            differences += 1
    event(f"differences from ESIS, each with drift: {'some' if differences else 'none'}")


@SETTINGS
@scenarios
@given(world=worlds(), steps=STEPS)
def test_r4_r5_r6_run_counts_add_up_to_the_tables(
    client: TestClient, db: sessionmaker[Session], world: World, steps: list[Step]
) -> None:
    runner = Runner.activated(client, db, world)
    for step in [*steps, None]:
        if step is None:
            runner.push()
        elif runner.step(step) is None:
            continue
        _check_counts(runner)


def _check_counts(runner: Runner) -> None:
    runs = runner.runs()
    assert [r["status"] for r in runs][-2:] == ["applied", "stored"]  # activation, first push
    assert [r["kind"] for r in runs][-2] == "activation"
    assert all(r["status"] == "applied" for r in runs[:-1]), [r["status"] for r in runs]
    totals: dict[str, Counter[str]] = {}
    for run in runs[:-1]:
        for entity, counts in run["counts"].items():
            totals.setdefault(entity, Counter()).update(counts)
    for entity, table in [*ENTITY_TABLES.items(), *((t, t) for t in LINK_TABLES)]:
        rows = runner.rows(table)
        total = totals.get(entity, Counter())
        assert total["added"] == sum(row["source"] == "esis" for row in rows), (entity, total)
        missing = sum(row["missing_in_esis_since"] is not None for row in rows)
        assert total["missing"] - total["reappeared"] == missing, (entity, total)
    opened = sum(t["drift_opened"] for t in totals.values())
    closed = sum(t["drift_closed"] for t in totals.values())
    assert len(runner.rows("drift_item")) == opened - closed, dict(totals)
    event(
        f"drift: {'opened' if opened else 'none opened'}, {'closed' if closed else 'none closed'}"
    )


@SETTINGS
@scenarios
@given(world=worlds(), steps=STEPS)
def test_r5_open_drift_matches_the_latest_snapshot(
    client: TestClient, db: sessionmaker[Session], world: World, steps: list[Step]
) -> None:
    """Drift that ESIS takes back disappears by itself (GET /drift's contract): fields."""
    runner = Runner.activated(client, db, world)
    for step in steps:
        if runner.step(step) is not None:
            _check_drift_is_current(runner, group=False)
    runner.push()
    _check_drift_is_current(runner, group=False)


@SETTINGS
@example(world=_two_classes(), steps=[Push((Move(0, 0),)), Push((Move(0, 0),))])
@given(world=worlds(), steps=STEPS)
def test_r5_group_drift_disappears_when_esis_takes_the_move_back(
    client: TestClient, db: sessionmaker[Session], world: World, steps: list[Step]
) -> None:
    """The same for a student's main group: a held move that ESIS undoes is no drift."""
    runner = Runner.activated(client, db, world)
    for step in steps:
        if runner.step(step) is not None:
            _check_drift_is_current(runner, group=True)
    runner.push()
    _check_drift_is_current(runner, group=True)


def _check_drift_is_current(runner: Runner, *, group: bool) -> None:
    """Every open drift item of a listed record holds our value and ESIS's, which differ.

    `group`: check only students' main-group drift; otherwise only the other fields.
    """
    records: dict[uuid.UUID, tuple[str, Json, Json]] = {}
    for entity, table in ENTITY_TABLES.items():
        listed = runner.listed(entity)
        for row in runner.rows(table):
            if row["esis_key"] in listed:
                records[row["id"]] = (entity, row, listed[row["esis_key"]])
    groups = {row["id"]: row["esis_key"] for row in runner.rows("school_group")}
    mains = {
        link["student_id"]: groups[link["group_id"]]
        for link in runner.rows("student_group")
        if not runner.listed("group")[groups[link["group_id"]]].get("is_composite")
    }
    pairs = runner.link_keys("student_guardian")
    links = {row["id"]: row for row in runner.rows("student_guardian")}
    relations = {
        (link["student"], g["key"]): link["relation"]
        for g in runner.snapshot["guardians"]
        for link in g["students"]
    }
    checked = 0
    for (entity, record_id, name), item in runner.open_drift().items():
        if (name == "group") != group:
            continue
        ours: Any
        if entity == "student_guardian":
            if pairs[record_id] not in relations:
                continue  # a link ESIS no longer lists keeps its drift for review
            ours, theirs = links[record_id][name], relations[pairs[record_id]]
        elif record_id not in records:
            continue  # so does a record ESIS no longer lists
        else:
            kind, row, record = records[record_id]
            assert kind == entity
            if name == "group":
                ours, theirs = mains.get(record_id), record["group"]
            else:
                ours, theirs = jsonable(row[name]), esis_values(entity, record)[name]
        assert item["esis_value"] == theirs, (entity, record_id, name, item, theirs)
        assert item["our_value"] == ours, (entity, record_id, name, item, ours)
        assert ours != theirs, (entity, record_id, name, item)
        checked += 1
    event(f"open drift items checked: {min(checked, 3)}{'+' if checked >= 3 else ''}")
