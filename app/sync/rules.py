"""What the merge knows of each kind of record: its fields, how each follows ESIS, and R5.

`should_apply` is R5 in one place; the specs say which fields are personal data (protected),
which follow ESIS unless edited (groups) and which are ESIS's own statements.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from enum import Enum
from typing import Any

from app.events.service import Created
from app.provenance import Source
from app.schools.models import UpdatePolicy
from app.sync.plan import Row


class Mode(Enum):
    """How an ESIS value that differs from ours is treated."""

    PROTECTED = "protected"  # personal data: R5, the school's policy decides
    FOLLOW_UNLESS_EDITED = "follow_unless_edited"  # groups: ESIS unless a user edited it
    FOLLOW = "follow"  # ESIS's own statements (a group's school year, staff active)


@dataclass(frozen=True)
class EntitySpec:
    name: str
    table: str
    fields: dict[str, Mode]


_P, _F, _E = Mode.PROTECTED, Mode.FOLLOW, Mode.FOLLOW_UNLESS_EDITED
PERSON_NAMES = {"last_name": _P, "name_prefix": _P, "initials": _P, "given_name": _P}
GROUP = EntitySpec(
    "group",
    "school_group",
    {"name": _E, "description": _E, "year_level": _E, "is_composite": _E, "school_year": _F},
)
STUDENT = EntitySpec(
    "student",
    "student",
    {
        **PERSON_NAMES,
        "first_names": _P,
        "birth_date": _P,
        "gender": _P,
        "year_level": _P,
        "email": _P,
    },
)
GUARDIAN = EntitySpec("guardian", "guardian", {**PERSON_NAMES, "email": _P, "phone": _P})
STAFF = EntitySpec("staff", "staff", {**PERSON_NAMES, "email": _P, "roles": _P, "active": _F})
DATE_FIELDS = frozenset({"birth_date"})


@dataclass(frozen=True)
class Context:
    school_id: uuid.UUID
    policy: UpdatePolicy
    activation: bool
    run_id: uuid.UUID | None
    now: dt.datetime
    source: Source  # `esis`, or `edexml` for a file imported before activation
    key_changes: bool = False  # propose key changes (sync/key_pairs.py): daily merges only


def should_apply(mode: Mode, *, policy: UpdatePolicy, edited: bool, activation: bool) -> bool:
    """R5 in one place: does a differing ESIS value replace ours?"""
    if mode is Mode.FOLLOW:
        return True
    if edited:
        return False
    if mode is Mode.FOLLOW_UNLESS_EDITED or activation:
        return True
    return policy is UpdatePolicy.APPLY_UNEDITED


# --- values -------------------------------------------------------------------------------


def values_of(model: Any, spec: EntitySpec) -> Row:
    # From the model's __dict__ (pydantic keeps its fields there), `jsonable` called only
    # for a value that is not plain: thousands of records on every merge.
    fields = model.__dict__
    return {
        name: value if type(value := fields[name]) in PLAIN else jsonable(value)
        for name in spec.fields
    }


def group_values(group: Any, school_year: str) -> Row:
    values = {
        name: jsonable(getattr(group, name)) for name in GROUP.fields if name != "school_year"
    }
    values["school_year"] = school_year
    return values


PLAIN = frozenset({str, int, bool, type(None)})


def jsonable(value: Any) -> Any:
    if type(value) in PLAIN:  # most values: no isinstance chain
        return value
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple):
        return list(value)
    return value


def to_db(name: str, value: Any) -> Any:
    if name in DATE_FIELDS and isinstance(value, str):
        return dt.date.fromisoformat(value)
    return value


def fold(value: Any) -> str:
    return " ".join(str(value or "").casefold().split())


def created_changes(key: str, values: Row) -> Created:
    """A created record's changes: its key, then its values (written out with its event)."""
    return Created((("esis_key", key),), values)
