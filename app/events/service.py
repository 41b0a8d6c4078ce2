"""Write events in the same transaction as the change they describe."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table
from sqlalchemy.orm import Session

from app.bulk import bulk_insert, copy_rows, use_copy
from app.db import json_value, utcnow
from app.events import repository
from app.events.models import Event


@dataclass(frozen=True, slots=True)
class Created:
    """The changes of a created record or link, `{name: {"before": None, "after": value}}` for
    each of `head` and then of `values`, kept as those values until its event is written
    (`as_dict`). `values` is the dict the record's insert holds already: an initial load's
    7,000 created records and links held about 7 MB of small dicts of their changes from the
    plan to the events, the top of the load's memory. A UUID among the values is written as
    its text, as `str()` gives it."""

    head: tuple[tuple[str, Any], ...]
    values: Mapping[str, Any]

    def as_dict(self) -> dict[str, Any]:
        out = {name: {"before": None, "after": value} for name, value in self.head}
        for name, value in self.values.items():
            out[name] = {"before": None, "after": value}
        return out


@dataclass(frozen=True)
class Change:
    entity: str
    entity_id: uuid.UUID | None
    kind: str
    changes: dict[str, Any] | Created = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The changes as the event holds them."""
        changes = self.changes
        return changes.as_dict() if isinstance(changes, Created) else changes


def emit(
    *,
    session: Session,
    school_id: uuid.UUID,
    changes: Sequence[Change],
    source: str,
    actor: str | None,
    sync_run_id: uuid.UUID | None = None,
    plain: bool = False,
) -> None:
    """Append events in order; numbering them locks the school until commit.

    `plain`: the changes hold no float (the merge's), so their JSON is written without the
    check for a float that is not finite (`app.db.json_text`)."""
    if not changes:
        return
    last = repository.take_event_numbers(session=session, school_id=school_id, count=len(changes))
    first = last - len(changes) + 1
    now = utcnow()
    table: Table = Event.__table__  # type: ignore[attr-defined]

    def rows(encode: Callable[[dict[str, Any]], Any]) -> Iterator[tuple[Any, ...]]:
        """Values in the order of `_COLUMNS`; `encode` gives the changes' column value."""
        for seq, c in enumerate(changes, start=first):
            yield (
                school_id,
                seq,
                now,
                c.entity,
                c.entity_id,
                c.kind,
                encode(c.as_dict()),
                source,
                actor,
                sync_run_id,
            )

    if use_copy(session, len(changes)):
        # Many events (a merge's): COPY of value tuples, no row dict per event.
        copy_rows(session, table, _COLUMNS, rows(functools.partial(json_value, plain=plain)))
        return
    bulk_insert(session, table, [dict(zip(_COLUMNS, row, strict=True)) for row in rows(_same)])


def _same(changes: dict[str, Any]) -> dict[str, Any]:
    return changes  # the JSON column type writes it


_COLUMNS = (
    "school_id",
    "seq",
    "occurred_at",
    "entity",
    "entity_id",
    "kind",
    "changes",
    "source",
    "actor",
    "sync_run_id",
)
