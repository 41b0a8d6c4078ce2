"""Corrections for ESIS: local edits whose value differs from what ESIS sends today.

A parent corrected their e-mail here; ESIS still has the old one. The school uses this list
to fix ESIS (the coupling is one-way, R5 keeps our value). It is computed from provenance on
every read, not stored: when ESIS catches up (its last values equal ours) the item is gone,
and a drift acceptance that removes the edit mark removes it too.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import uuid
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from app.errors import Unprocessable
from app.pagination import decode_cursor, encode_cursor
from app.roster import repository
from app.roster.views import display_name

# The kinds whose records carry ESIS values beside local edits, in report order.
TABLES = {
    "group": "school_group",
    "student": "student",
    "guardian": "guardian",
    "staff": "staff",
    "student_guardian": "student_guardian",
}
KINDS = tuple(TABLES)
SCAN = 500


class Correction(BaseModel):
    kind: str = Field(description="`group`, `student`, `guardian`, `staff` or `student_guardian`.")
    record_id: uuid.UUID
    esis_key: str | None = Field(description="The key ESIS knows the record by (none for links).")
    name: str | None = Field(description="Who or what, to find the record in ESIS.")
    field: str
    our_value: Any = Field(description="The value here, as edited locally.")
    esis_value: Any = Field(description="What ESIS sent in its latest snapshot.")
    edited_by: str | None = None
    edited_at: str | None = None


class CorrectionList(BaseModel):
    items: list[Correction]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end."
    )


CSV_COLUMNS = list(Correction.model_fields)


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.date) else value


def _parse_cursor(cursor: str | None) -> tuple[int, uuid.UUID, str] | None:
    if cursor is None:
        return None
    value = decode_cursor(cursor)
    try:
        kind, record_id, field = value
        return KINDS.index(kind), uuid.UUID(str(record_id)), str(field)
    except (TypeError, ValueError):
        raise Unprocessable("cursor: not a cursor this service issued") from None


def _items_of(kind: str, row: dict[str, Any], field: str | None) -> list[Correction]:
    edits = row["local_edits"] or {}
    esis = row["esis_values"] or {}
    out = []
    for name in sorted(edits):
        if (field is not None and name != field) or name not in esis or name not in row:
            continue
        ours = _jsonable(row[name])
        if ours == esis[name]:
            continue
        mark = edits[name] if isinstance(edits[name], dict) else {}
        out.append(
            Correction(
                kind=kind,
                record_id=row["id"],
                esis_key=row.get("esis_key"),
                name=None
                if kind == "student_guardian"
                else row["name"]
                if kind == "group"
                else display_name(row),
                field=name,
                our_value=ours,
                esis_value=esis[name],
                edited_by=mark.get("by"),
                edited_at=mark.get("at"),
            )
        )
    return out


def list_corrections(
    *,
    session: Session,
    school_id: uuid.UUID,
    kind: str | None,
    field: str | None,
    limit: int,
    cursor: str | None,
) -> CorrectionList:
    """One page, ordered by kind, record id and field; scans only records with local edits."""
    if kind is not None and kind not in TABLES:
        raise Unprocessable(
            f"kind: {kind!r} is not one of {', '.join(KINDS)}",
            errors=[{"field": "kind", "message": "unknown kind"}],
        )
    start = _parse_cursor(cursor)
    items: list[Correction] = []
    for index, name in enumerate(KINDS):
        if (kind is not None and name != kind) or (start is not None and index < start[0]):
            continue
        after = start[1:] if start is not None and index == start[0] else None
        bound = (after[0], True) if after is not None else None  # (id, inclusive)
        while len(items) <= limit:
            rows = repository.edited_rows(
                session=session,
                school_id=school_id,
                table_name=TABLES[name],
                bound=bound,
                limit=SCAN,
            )
            for row in rows:
                for item in _items_of(name, row, field):
                    if after is not None and (item.record_id, item.field) <= after:
                        continue
                    items.append(item)
            if len(rows) < SCAN:
                break
            bound = (rows[-1]["id"], False)
        if len(items) > limit:
            break
    page_items = items[:limit]
    next_cursor = None
    if len(items) > limit:
        last = page_items[-1]
        next_cursor = encode_cursor([last.kind, str(last.record_id), last.field])
    return CorrectionList(items=page_items, next_cursor=next_cursor)


def _cell(value: Any) -> str:
    text = "" if value is None else value if isinstance(value, str) else json.dumps(value)
    # A spreadsheet would run a cell that starts like a formula.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def to_csv(report: CorrectionList) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for item in report.items:
        row = item.model_dump(mode="json")
        writer.writerow([_cell(row[column]) for column in CSV_COLUMNS])
    return out.getvalue()
