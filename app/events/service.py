"""Write events in the same transaction as the change they describe."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table
from sqlalchemy.orm import Session

from app.bulk import bulk_insert, copy_escape, copy_lines, copy_text, json_text, use_copy
from app.db import utcnow
from app.events import repository
from app.events.models import Event


@dataclass(frozen=True)
class Change:
    entity: str
    entity_id: uuid.UUID | None
    kind: str
    changes: dict[str, Any] = field(default_factory=dict)


def emit(
    *,
    session: Session,
    school_id: uuid.UUID,
    changes: Sequence[Change],
    source: str,
    actor: str | None,
    sync_run_id: uuid.UUID | None = None,
) -> None:
    """Append events in order; numbering them locks the school until commit."""
    if not changes:
        return
    last = repository.take_event_numbers(session=session, school_id=school_id, count=len(changes))
    first = last - len(changes) + 1
    now = utcnow()
    table: Table = Event.__table__  # type: ignore[attr-defined]
    if use_copy(session, len(changes)):
        # Many events (a merge): COPY lines written here, the columns all events of one
        # call share once; the same rows as the insert below.
        shared = (school_id, now, source, actor, sync_run_id)
        copy_lines(session, table, (*_SHARED, *_OWN), _lines(changes, first, shared))
        return
    rows = [
        {
            "school_id": school_id,
            "seq": first + i,
            "occurred_at": now,
            "entity": c.entity,
            "entity_id": c.entity_id,
            "kind": c.kind,
            "changes": c.changes,
            "source": source,
            "actor": actor,
            "sync_run_id": sync_run_id,
        }
        for i, c in enumerate(changes)
    ]
    bulk_insert(session, table, rows)


_SHARED = ("school_id", "occurred_at", "source", "actor", "sync_run_id")
_OWN = ("seq", "entity", "entity_id", "kind", "changes")


def _lines(
    changes: Sequence[Change],
    first: int,
    shared: tuple[uuid.UUID, dt.datetime, str, str | None, uuid.UUID | None],
) -> Iterator[str]:
    """Each event as a COPY line: the shared columns, then seq, entity, entity_id, kind and
    changes (JSON as every insert writes it, `json_text`)."""
    prefix = "".join(copy_text(v) + "\t" for v in shared)
    names: dict[str, str] = {}  # entity and kind: a handful of names, escaped once each
    for seq, c in enumerate(changes, start=first):
        entity = names.get(c.entity)
        if entity is None:
            entity = names[c.entity] = copy_escape(c.entity)
        kind = names.get(c.kind)
        if kind is None:
            kind = names[c.kind] = copy_escape(c.kind)
        entity_id = "\\N" if c.entity_id is None else copy_text(c.entity_id)
        text = json_text(c.changes)
        assert text is not None  # a dict is never JSON null
        yield f"{prefix}{seq}\t{entity}\t{entity_id}\t{kind}\t{copy_escape(text)}\n"
