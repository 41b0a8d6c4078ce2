"""Write events in the same transaction as the change they describe."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table
from sqlalchemy.orm import Session

from app.bulk import bulk_insert, copy_rows, json_text, use_copy
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
        # Many events (a merge's): COPY of value tuples, no row dict per event.
        shared = (source, actor, sync_run_id)
        rows = (
            (school_id, seq, now, c.entity, c.entity_id, c.kind, json_text(c.changes), *shared)
            for seq, c in enumerate(changes, start=first)
        )
        copy_rows(session, table, _COLUMNS, rows)
        return
    dicts = [
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
    bulk_insert(session, table, dicts)


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
