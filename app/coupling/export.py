"""The school's current data as an EDEXml 2.1 file (`GET /exports/edexml`).

Reads the live records (not soft-deleted, not purged) and their live links into the
`EsisSnapshot` JSON shape, writes it with `app.esis.edexml_write` and checks the result
against the schema. Records without an ESIS key (local ones) get a stable generated key: a
prefix and the first 12 hex digits of their id (`L-3f2a…` for a student).
"""

from __future__ import annotations

import datetime as dt
import io
import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from app.coupling import repository
from app.errors import Conflict, NotFound
from app.esis.edexml_validate import validate_edexml
from app.esis.edexml_write import KEY_PREFIXES, school_year_of, write_edexml
from app.esis.errors import FormatError

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
Row = dict[str, Any]


def export_edexml(
    *, session: Session, school_id: uuid.UUID, now: dt.datetime | None = None
) -> bytes:
    """The school's current live data as an EDEXml 2.1 document (UTF-8 bytes).

    `schooljaar` is the school's current school year, or the school year of today (in the
    Netherlands) when it has none; `aanmaakdatum` is `now` (default: the current time).
    Raises NotFound for an unknown school and Conflict when the school has no students
    (EDEXml requires at least one `leerling`).
    """
    moment = (now or dt.datetime.now(dt.UTC)).astimezone(AMSTERDAM)
    snapshot = load_snapshot(session=session, school_id=school_id, today=moment.date())
    if not snapshot["students"]:
        raise Conflict("the school has no students; an EDEXml file needs at least one leerling")
    out = io.BytesIO()
    write_edexml(snapshot, out, generated_at=moment)
    body = out.getvalue()
    try:
        validate_edexml(body)
    except FormatError as exc:  # pragma: no cover - a bug here, never the client's fault
        raise RuntimeError(f"the EDEXml export does not validate: {exc.detail}") from None
    return body


# --- the database -----------------------------------------------------------------------------


def _live(session: Session, name: str, school_id: uuid.UUID) -> list[Row]:
    return repository.live_rows(session=session, table_name=name, school_id=school_id)


def _keys(rows: Sequence[Row], table: str) -> dict[uuid.UUID, str]:
    """Each record's key: its ESIS key, else a stable one made from its id."""
    taken = {row["esis_key"] for row in rows if row["esis_key"]}
    out: dict[uuid.UUID, str] = {}
    for row in rows:
        key = row["esis_key"]
        if not key:
            key = KEY_PREFIXES[table] + row["id"].hex[:12]
            if key in taken:
                key = KEY_PREFIXES[table] + row["id"].hex
        out[row["id"]] = key
    return out


def load_snapshot(*, session: Session, school_id: uuid.UUID, today: dt.date) -> dict[str, Any]:
    """The school's live data in the `EsisSnapshot` JSON shape (keys as in the export)."""
    school = repository.school_row(session=session, school_id=school_id)
    if school is None:
        raise NotFound("school not found")

    groups = _live(session, "school_group", school_id)
    students = _live(session, "student", school_id)
    guardians = _live(session, "guardian", school_id)
    staff = [row for row in _live(session, "staff", school_id) if row["active"]]
    group_keys = _keys(groups, "school_group")
    student_keys = _keys(students, "student")
    guardian_keys = _keys(guardians, "guardian")
    staff_keys = _keys(staff, "staff")
    composite = {row["id"] for row in groups if row["is_composite"]}

    main: dict[uuid.UUID, list[tuple[dt.datetime, str]]] = defaultdict(list)
    composites: dict[uuid.UUID, list[str]] = defaultdict(list)
    for link in _live(session, "student_group", school_id):
        student, group = link["student_id"], link["group_id"]
        if student not in student_keys or group not in group_keys:
            continue
        if group in composite:
            composites[student].append(group_keys[group])
        else:
            main[student].append((link["created_at"], group_keys[group]))
    parents: dict[uuid.UUID, list[dict[str, Any]]] = defaultdict(list)
    for link in _live(session, "student_guardian", school_id):
        student, guardian = link["student_id"], link["guardian_id"]
        if student in student_keys and guardian in guardian_keys:
            parents[guardian].append(
                {"student": student_keys[student], "relation": link["relation"]}
            )
    taught: dict[uuid.UUID, list[str]] = defaultdict(list)
    for link in _live(session, "staff_group", school_id):
        if link["staff_id"] in staff_keys and link["group_id"] in group_keys:
            taught[link["staff_id"]].append(group_keys[link["group_id"]])

    def person(row: Row, keys: dict[uuid.UUID, str]) -> dict[str, Any]:
        fields = ("last_name", "name_prefix", "initials", "given_name", "email")
        return {"key": keys[row["id"]], **{name: row[name] for name in fields}}

    return {
        "school": {
            "brin": school["brin"],
            "branch": school["branch"],
            "school_year": school["current_school_year"] or school_year_of(today),
        },
        "groups": sorted(
            (
                {
                    "key": group_keys[row["id"]],
                    "name": row["name"],
                    "description": row["description"],
                    "year_level": row["year_level"],
                    "is_composite": row["is_composite"],
                }
                for row in groups
            ),
            key=lambda g: str(g["key"]),
        ),
        "students": sorted(
            (
                {
                    **person(row, student_keys),
                    "first_names": row["first_names"],
                    "birth_date": row["birth_date"],
                    "gender": row["gender"],
                    "year_level": row["year_level"],
                    # One main group in EDEXml: the oldest link, should there be several.
                    "group": min(main[row["id"]])[1] if main[row["id"]] else None,
                    "composite_groups": sorted(composites[row["id"]]),
                }
                for row in students
            ),
            key=lambda s: str(s["key"]),
        ),
        "guardians": sorted(
            (
                {
                    **person(row, guardian_keys),
                    "phone": row["phone"],
                    "students": parents[row["id"]],
                }
                for row in guardians
                if parents[row["id"]]
            ),
            key=lambda g: str(g["key"]),
        ),
        "staff": sorted(
            (
                {
                    **person(row, staff_keys),
                    "roles": list(row["roles"] or []),
                    "groups": sorted(taught[row["id"]]),
                }
                for row in staff
            ),
            key=lambda s: str(s["key"]),
        ),
    }
