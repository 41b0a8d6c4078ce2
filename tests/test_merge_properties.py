"""Properties of the merge (R4-R6) over random schools and random sequences of steps.

Every example makes its own school through the real API, activates it (policy `ignore`),
then takes 1-5 steps: a snapshot (the previous one with random mutations) or a local edit
(what the roster PATCH will do, done in SQL). The run ends with a snapshot, so that the
latest snapshot has seen every local edit. Helpers: tests/property_helpers.py.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, example, given, settings
from sqlalchemy import Engine, text, update
from sqlalchemy.orm import Session, sessionmaker

from app.esis.parsing import parse_json
from app.schools.models import UpdatePolicy
from app.sync import repository
from app.sync.digests import digest
from app.sync.merge import state_for_merge
from app.sync.service import incoming_records, plan_merge
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


# --- the short-cut (issue 18) ------------------------------------------------------------
#
# A known record that already agrees with ESIS in every field, with no drift, no missing mark
# and no deletion, is settled by one comparison (`records.agrees`) instead of the rules field
# by field. The plan must be the same either way: the next snapshot is planned against the
# school as the steps left it (local edits included), with the short-cut and without it.


def _next_plan(runner: Runner, *, shortcut: bool, digests: bool = False) -> Json:
    """The plan of the World's next snapshot against the school as it is now, normalised:
    the ids the plan makes up are numbered in the order it made them. With `digests`, the
    state is read as the daily merge reads it (`merge.state_for_merge`): the persons whose
    digest settles them narrow, without their fields."""
    body = runner.world.snapshot(
        brin=runner.brin, generated_at=dt.datetime(2026, 11, 3, 9, 0, tzinfo=dt.UTC)
    )
    snapshot = parse_json(json.dumps(body).encode())
    incoming = incoming_records(snapshot)
    with runner.db() as session:
        if digests:
            state = state_for_merge(session, runner.school_id, incoming, activation=False)
        else:
            state = repository.load_state(session=session, school_id=runner.school_id)
    plan = plan_merge(
        state=state,
        snapshot=snapshot,
        incoming=incoming,
        policy=UpdatePolicy.IGNORE,
        activation=False,
        run_id=uuid.UUID(int=1),
        now=dt.datetime(2026, 11, 3, 9, 0, 1, tzinfo=dt.UTC),
        key_changes=True,
        shortcut=shortcut,
    )
    made: dict[uuid.UUID, str] = {}
    for row in [*(r for t in plan.tables.values() for r in t.inserts), *plan.drift_inserts]:
        made[row["id"]] = f"new-{len(made)}"

    def norm(value: Any) -> Any:
        if isinstance(value, uuid.UUID):
            return made.get(value, str(value))
        if isinstance(value, dict):
            return {k: norm(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [norm(v) for v in value]
        return value

    normalised: Json = norm(
        {
            "tables": {
                name: {
                    "inserts": t.inserts,
                    "updates": sorted(t.updates, key=lambda r: str(r["id"])),
                    "deletes": sorted(map(str, t.deletes)),
                }
                for name, t in sorted(plan.tables.items())
                if t.inserts or t.updates or t.deletes
            },
            "drift": [plan.drift_inserts, plan.drift_updates, plan.drift_deletes],
            "drift_touched": sorted(map(str, plan.drift_touched)),
            "changes": sorted(
                ([c.entity, c.entity_id, c.kind, c.as_dict()] for c in plan.changes), key=repr
            ),
            "counts": plan.counts_json(),
            "warnings": plan.warnings,
            "key_changes": plan.key_changes,
        }
    )
    return normalised


def _check_shortcut_changes_nothing(runner: Runner) -> Json:
    """The plan is the same with the short-cut, without it, and with the records settled by
    their digest read narrow."""
    planned = _next_plan(runner, shortcut=True)
    assert planned == _next_plan(runner, shortcut=False)
    assert planned == _next_plan(runner, shortcut=True, digests=True)
    return planned


@SETTINGS
@scenarios
@given(world=worlds(), steps=STEPS)
def test_r4_r6_shortcut_plans_exactly_what_the_full_rules_plan(
    client: TestClient, db: sessionmaker[Session], world: World, steps: list[Step]
) -> None:
    """After any steps (local edits, drift, missing marks, moves), with or without the
    short-cut the next snapshot's plan is the same; and the run it makes stamps the drift
    items it saw again with its id."""
    runner = Runner.activated(client, db, world)
    for step in steps:
        runner.step(step)
        _check_shortcut_changes_nothing(runner)
    drift_before = {row["id"]: row for row in runner.rows("drift_item")}
    again = runner.push()
    assert again["status"] == "applied"
    after = runner.rows("drift_item")
    for row in after:  # opened by this run (a local edit not pushed yet): it names the run
        if row["id"] not in drift_before:
            assert str(row["first_run_id"]) == str(row["last_run_id"]) == again["id"], row
    _check_drift_seen_by(drift_before, [r for r in after if r["id"] in drift_before], again["id"])
    _check_shortcut_changes_nothing(runner)


def _set(runner: Runner, table: str, key: str, **values: Any) -> uuid.UUID:
    t = repository.table(table)
    with runner.db.begin() as session:
        record_id: uuid.UUID = session.execute(
            update(t)
            .where(t.c.school_id == runner.school_id, t.c.esis_key == key)
            .values(values)
            .returning(t.c.id)
        ).scalar_one()
    return record_id


def test_r5_r6_shortcut_esis_unchanged_but_local_state_changed_takes_the_full_path(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    """ESIS sends exactly what it sent last time (its values, as stored beside the record,
    are equal), but here the record changed: a field edited locally, marked missing, deleted
    locally. Each must come out as the full rules say: drift, reappeared, suppressed."""
    runner = Runner.activated(client, db, _two_classes())
    runner.local_edit(LocalEdit("guardian", "email", 0, "info@school.nl"))  # V900
    now = dt.datetime.now(dt.UTC)
    _set(runner, "guardian", "V901", missing_in_esis_since=now)
    _set(runner, "student", "S901", deleted_at=now, deleted_by="key:test")
    stored = {row["esis_key"]: row["esis_values"] for row in runner.rows("guardian")}
    assert stored["V900"] == esis_values("guardian", runner.listed("guardian")["V900"])

    plan = _check_shortcut_changes_nothing(runner)
    assert plan["counts"]["guardian"]["drift_opened"] == 1
    assert plan["counts"]["guardian"]["reappeared"] == 1
    assert plan["counts"]["student"]["suppressed"] == 1
    assert plan["counts"]["student"]["unchanged"] == 1
    run = runner.push()
    assert run["counts"]["guardian"]["drift_opened"] == 1, run["counts"]
    assert run["counts"]["guardian"]["reappeared"] == 1, run["counts"]
    assert run["counts"]["student"]["suppressed"] == 1, run["counts"]
    # An open drift item is local state too: the record still goes the full path, and the
    # item it sees again is stamped with the run.
    drift_before = {row["id"]: row for row in runner.rows("drift_item")}
    again = runner.push()
    assert again["counts"]["guardian"]["drift_opened"] == 0
    _check_drift_seen_by(drift_before, runner.rows("drift_item"), again["id"])
    (item,) = runner.rows("drift_item")
    assert str(item["last_run_id"]) == again["id"]
    _check_shortcut_changes_nothing(runner)


def test_r5_shortcut_esis_changed_but_ours_agrees_closes_the_drift(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    """The reverse: ESIS's values moved away from what it sent before, and now equal ours
    (ESIS adopted a local edit; ESIS took back a change we kept as drift). The drift closes,
    the stored ESIS values follow, and nothing else changes."""
    runner = Runner.activated(client, db, _two_classes())
    runner.local_edit(LocalEdit("guardian", "email", 0, "info@school.nl"))  # V900
    runner.step(Push((Edit("student", "gender", 0, "male"),)))  # S900: drift
    assert {row["field"] for row in runner.rows("drift_item")} == {"email", "gender"}
    runner.adopt(Adopt(0))  # ESIS now sends the e-mail set here
    runner.world.mutate(Revert("student", 0))  # and takes its gender change back
    plan = _check_shortcut_changes_nothing(runner)
    assert plan["counts"]["guardian"]["drift_closed"] == 1
    assert plan["counts"]["student"]["drift_closed"] == 1
    assert plan["counts"]["guardian"]["updated"] == plan["counts"]["student"]["updated"] == 0
    run = runner.push()
    assert run["counts"]["guardian"]["drift_closed"] == 1, run["counts"]
    assert run["counts"]["student"]["drift_closed"] == 1, run["counts"]
    assert runner.rows("drift_item") == []
    assert "drift" not in json.dumps(_check_shortcut_changes_nothing(runner)["changes"])
    rows = {row["esis_key"]: row for row in runner.rows("guardian")}
    assert rows["V900"]["esis_values"]["email"] == "info@school.nl"
    assert rows["V900"]["email"] == "info@school.nl"


# --- the digest (issue 18) -------------------------------------------------------------------
#
# A person whose stored digest is the digest of what ESIS sends now, at its version, with no
# missing mark, deletion, tombstone or drift, is settled without its fields being read
# (sync/digests.py). `_check_shortcut_changes_nothing` plans each step that way too.


def _unsettled(runner: Runner, entity: str) -> set[str]:
    """Keys of `entity` the daily merge would read whole for the World's next snapshot."""
    body = runner.world.snapshot(
        brin=runner.brin, generated_at=dt.datetime(2026, 11, 3, 9, 0, tzinfo=dt.UTC)
    )
    incoming = incoming_records(parse_json(json.dumps(body).encode()))
    with runner.db() as session:
        state = state_for_merge(session, runner.school_id, incoming, activation=False)
    current = {"student": state.students, "guardian": state.guardians, "staff": state.staff}
    entity_state = current[entity]
    return {
        row["esis_key"]
        for row in entity_state.rows.values()
        if row["id"] not in entity_state.settled
    }


def _check_digests_current(runner: Runner) -> None:
    """Every live, listed person agreeing with ESIS has the digest of its values and version."""
    for entity in ("student", "guardian", "staff"):
        for row in runner.rows(ENTITY_TABLES[entity]):
            assert row["esis_digest"] == digest(row["id"], row["esis_values"], row["version"]), row[
                "esis_key"
            ]


def test_r5_r6_digest_equal_but_local_state_changed_takes_the_full_path(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    """ESIS sends what it sent last time, so each stored digest is still the digest of what
    ESIS sends; but the record changed here: a field edited locally (its version moved on), a
    missing mark, a local deletion, a tombstone. None is settled by its digest; each comes out
    as the full rules say."""
    runner = Runner.activated(client, db, _two_classes())
    _check_digests_current(runner)
    assert _unsettled(runner, "guardian") == _unsettled(runner, "student") == set()
    before = {row["esis_key"]: row["esis_digest"] for row in runner.rows("guardian")}
    runner.local_edit(LocalEdit("guardian", "email", 0, "info@school.nl"))  # V900
    now = dt.datetime.now(dt.UTC)
    _set(runner, "guardian", "V901", missing_in_esis_since=now)
    _set(runner, "student", "S901", deleted_at=now, deleted_by="key:test")
    _set(runner, "staff", "LK90", tombstoned_at=now)
    after = {row["esis_key"]: row["esis_digest"] for row in runner.rows("guardian")}
    assert after == before  # the digests are what they were: equal to ESIS's
    assert _unsettled(runner, "guardian") == {"V900", "V901"}
    assert _unsettled(runner, "student") == {"S901"}
    assert _unsettled(runner, "staff") == {"LK90"}

    plan = _check_shortcut_changes_nothing(runner)
    assert plan["counts"]["guardian"]["drift_opened"] == 1
    assert plan["counts"]["guardian"]["reappeared"] == 1
    assert plan["counts"]["student"]["suppressed"] == 1
    assert plan["counts"]["staff"]["suppressed"] == 1
    run = runner.push()
    assert run["counts"]["guardian"]["drift_opened"] == 1, run["counts"]
    rows = {row["esis_key"]: row for row in runner.rows("guardian")}
    assert rows["V900"]["email"] == "info@school.nl"  # the local edit stays (R5)
    assert rows["V900"]["esis_digest"] is None  # ours differs from ESIS: no claim
    v901 = rows["V901"]
    assert v901["esis_digest"] == digest(v901["id"], v901["esis_values"], v901["version"])
    assert _unsettled(runner, "guardian") == {"V900"}  # the drift keeps it on the full path
    _check_shortcut_changes_nothing(runner)


def test_r5_digest_differs_but_the_record_agrees_is_settled_by_its_fields(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    """The reverse: the record agrees with ESIS in every field, but its digest does not say
    so (none yet, as after the upgrade that added it; one of another version; a wrong one).
    It is read whole, settled by `agrees`, and given the right digest; nothing else changes,
    and the next merge settles it by its digest."""
    runner = Runner.activated(client, db, _two_classes())
    _set(runner, "guardian", "V900", esis_digest=None)
    guardian = {row["esis_key"]: row for row in runner.rows("guardian")}["V901"]
    _set(runner, "guardian", "V901", esis_digest=digest(guardian["id"], guardian["esis_values"], 7))
    _set(runner, "student", "S900", esis_digest="0" * 32)
    assert _unsettled(runner, "guardian") == {"V900", "V901"}
    assert _unsettled(runner, "student") == {"S900"}

    plan = _check_shortcut_changes_nothing(runner)
    assert plan["counts"]["guardian"]["unchanged"] == 2
    assert plan["counts"]["guardian"]["updated"] == plan["counts"]["student"]["updated"] == 0
    updates = plan["tables"]["guardian"]["updates"] + plan["tables"]["student"]["updates"]
    assert sorted(set(u) - {"school_id", "id"} for u in updates) == [{"esis_digest"}] * 3
    run = runner.push()
    assert run["counts"]["guardian"]["updated"] == 0, run["counts"]
    _check_digests_current(runner)
    assert _unsettled(runner, "guardian") == _unsettled(runner, "student") == set()
    assert _check_shortcut_changes_nothing(runner)["tables"] == {}


def test_r5_a_field_changed_without_a_version_bump_clears_the_digest(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    """A write that changes a field ESIS sends but not `version` (an operator's UPDATE by
    hand) would leave a digest that no longer tells the truth: a trigger clears it, so the
    next merge compares the record field by field and keeps the change as drift (R5).
    What leaves the claim true keeps it: a write that bumps the version (the digest of the
    new version differs anyway), one that sets the digest itself (the merge), one of a
    column ESIS does not send."""
    runner = Runner.activated(client, db, _two_classes())
    rows = {row["esis_key"]: row for row in runner.rows("guardian")}
    assert rows["V900"]["esis_digest"] is not None
    _set(runner, "guardian", "V900", email="hand@school.nl")  # version left as it was
    _set(runner, "guardian", "V901", email="api@school.nl", version=rows["V901"]["version"] + 1)
    _set(runner, "student", "S900", local_edits={"email": {"by": "key:test", "at": "now"}})
    _set(runner, "student", "S901", last_name="Bakker", esis_digest="1" * 32)
    _set(runner, "school_group", "G1", name="Groep 4a")
    _set(runner, "staff", "LK90", roles=["teacher", "ib"])
    after = {row["esis_key"]: row for row in runner.rows("guardian")}
    assert after["V900"]["esis_digest"] is None
    assert after["V901"]["esis_digest"] == rows["V901"]["esis_digest"]
    students = {row["esis_key"]: row for row in runner.rows("student")}
    assert students["S900"]["esis_digest"] is not None
    assert students["S901"]["esis_digest"] == "1" * 32
    groups = {row["esis_key"]: row for row in runner.rows("school_group")}
    assert groups["G1"]["esis_digest"] is None
    assert groups["G2"]["esis_digest"] is not None
    (teacher,) = runner.rows("staff")
    assert teacher["esis_digest"] is None  # a JSON field (roles) too
    assert _unsettled(runner, "guardian") == {"V900", "V901"}
    plan = _check_shortcut_changes_nothing(runner)
    assert plan["counts"]["guardian"]["drift_opened"] == 2  # neither change is undone
    run = runner.push()
    assert run["counts"]["guardian"]["drift_opened"] == 2, run["counts"]
    kept = {row["esis_key"]: row["email"] for row in runner.rows("guardian")}
    assert kept == {"V900": "hand@school.nl", "V901": "api@school.nl"}
    # The values ESIS sent, changed by hand: the digest goes, and the next merge writes
    # them back as ESIS sends them.
    (student,) = [row for row in runner.rows("student") if row["esis_key"] == "S900"]
    assert student["esis_digest"] is not None
    _set(runner, "student", "S900", esis_values={**student["esis_values"], "email": "x@y.nl"})
    (student,) = [row for row in runner.rows("student") if row["esis_key"] == "S900"]
    assert student["esis_digest"] is None
    plan = _check_shortcut_changes_nothing(runner)
    (written,) = [u for u in plan["tables"]["student"]["updates"] if u["id"] == str(student["id"])]
    assert written["esis_values"]["email"] != "x@y.nl"


def test_the_digest_triggers_watch_every_field_esis_sends(engine: Engine) -> None:
    """The database migrated to head has a trigger on each table of groups and persons that
    watches every field of the merge's spec and the values ESIS sent: a field added to a spec
    needs a migration that watches it too, and a SQLite batch rebuild of one of these tables
    (which drops its triggers) one that creates them again (app/migrations/digest_triggers.py)."""
    found: dict[str, str]
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            found = dict(
                conn.execute(
                    text(
                        "SELECT c.relname, pg_get_triggerdef(t.oid) FROM pg_trigger t "
                        "JOIN pg_class c ON c.oid = t.tgrelid "
                        "WHERE t.tgname LIKE '%_esis_digest_stale' AND NOT t.tgisinternal"
                    )
                ).all()
            )
        else:
            found = dict(
                conn.execute(
                    text(
                        "SELECT tbl_name, sql FROM sqlite_master WHERE type = 'trigger' "
                        "AND name LIKE '%_esis_digest_stale'"
                    )
                ).all()
            )
    assert set(found) == {spec.table for spec in SPECS.values()}
    for spec in SPECS.values():
        definition = found[spec.table].replace('"', "")
        for name in (*spec.fields, "esis_values"):
            assert re.search(rf"\bnew\.{name}\b", definition, re.IGNORECASE), (spec, name)
