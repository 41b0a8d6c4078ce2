"""The merge's events are written without the check for a float that is not finite
(`emit(plain=True)`, `app.db.json_text(plain=True)`): what holds that up, and that the text
is the same.

Their values are the snapshot's fields (what ESIS sends) and the columns of the records and
links they are compared with. Neither has a float, so there is no NaN or infinity to write
as `null`; a float field added to either fails here first."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest
from sqlalchemy import Float, Numeric

import app.models  # noqa: F401  (registers every table)
from app.db import json_text, metadata
from app.esis.schemas import EsisSnapshot
from app.events.service import Change, Created
from app.sync.repository import ORDER

# What a merge writes (its record and link tables) and compares with: drift and key changes.
MERGE_TABLES = (*ORDER, "drift_item", "key_change")


def _types(schema: Any) -> set[str]:
    """Every JSON type named anywhere in a JSON schema."""
    found: set[str] = set()
    if isinstance(schema, dict):
        kind = schema.get("type")
        if isinstance(kind, str):
            found.add(kind)
        elif isinstance(kind, list):
            found.update(kind)
        for value in schema.values():
            found |= _types(value)
    elif isinstance(schema, list):
        for value in schema:
            found |= _types(value)
    return found


def test_the_snapshot_has_no_number_that_is_not_an_integer() -> None:
    types = _types(EsisSnapshot.model_json_schema())
    assert "integer" in types  # the walk sees the fields
    assert "number" not in types


@pytest.mark.parametrize("name", MERGE_TABLES)
def test_the_merges_tables_have_no_float_column(name: str) -> None:
    table = metadata.tables[name]
    assert [c.name for c in table.columns if isinstance(c.type, Float | Numeric)] == []


@pytest.mark.parametrize(
    "value",
    [
        {"last_name": {"before": None, "after": "Jansen"}, "year_level": {"before": 4, "after": 5}},
        {"student_id": {"before": None, "after": str(uuid.uuid4())}, "active": {"after": True}},
        {"roles": {"before": ["leerkracht"], "after": []}, "note": 'é ✓ \u2028 "q" \\ \n'},
        {"at": dt.datetime(2027, 1, 2, 3, 4, tzinfo=dt.UTC), "big": 2**70},  # the fallback
        {},
    ],
)
def test_plain_json_is_the_text_json_text_writes(value: dict[str, Any]) -> None:
    assert json_text(value, plain=True) == json_text(value)


def test_a_created_change_is_written_as_the_dict_it_stands_for() -> None:
    """`Created` keeps a created link's or record's values until its event is written; the
    event's JSON is what the dict of before/after pairs was, ends written as their text."""
    student, group = uuid.uuid4(), uuid.uuid4()
    values = {"relation": "mother", "since": "2026-08-01"}
    change = Change(
        "student_guardian", uuid.uuid4(), "created", Created((("a", student), ("b", group)), values)
    )
    expected = {
        "a": {"before": None, "after": str(student)},
        "b": {"before": None, "after": str(group)},
        "relation": {"before": None, "after": "mother"},
        "since": {"before": None, "after": "2026-08-01"},
    }
    assert json_text(change.as_dict(), plain=True) == json_text(expected)
    assert json.loads(json_text(change.as_dict(), plain=True) or "") == expected
    plain = Change("student", None, "updated", {"x": {"before": 1, "after": 2}})
    assert plain.as_dict() is plain.changes
