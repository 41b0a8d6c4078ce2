"""The change feed's response bodies."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

_EXAMPLE: dict[str, Any] = {
    "seq": 42,
    "occurred_at": "2026-11-02T06:00:03Z",
    "entity": "guardian",
    "entity_id": "0f8fad5b-d9cb-469f-a165-70867728950e",
    "kind": "drift-opened",
    "changes": {"phone": {"ours": "+31612345678", "esis": "+31687654321"}},
    "source": "esis",
    "actor": "esis",
    "sync_run_id": "7c9e6679-7425-40de-944b-e07fc1f90ae7",
}


_ANY_VALUE: dict[str, Any] = {
    "description": "A field's value as stored: text, a number, a flag, a list of ids, or null."
}
# What one field's entry in `changes` holds. Published as a schema; the value is passed
# through as committed (FieldChange members are absent, not null, when they do not apply).
_FIELD_CHANGE: dict[str, Any] = {
    "title": "FieldChange",
    "type": "object",
    "properties": {
        "before": _ANY_VALUE,
        "after": _ANY_VALUE,
        "ours": {**_ANY_VALUE, "description": "Drift (R5): the value here."},
        "esis": {**_ANY_VALUE, "description": "Drift (R5): the value ESIS sends."},
        "reason": {"type": "string", "maxLength": 2000, "description": "Why, in words."},
    },
}
Changes = Annotated[
    dict[str, Any],
    WithJsonSchema(
        {
            "type": "object",
            "maxProperties": 200,
            "additionalProperties": {
                "anyOf": [
                    _FIELD_CHANGE,
                    {"type": "string", "maxLength": 2000},
                    {"type": "integer", "format": "int64"},
                    {"type": "null"},
                ]
            },
        }
    ),
]


class EventPublic(BaseModel):
    """One change to one record, as it was committed."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [_EXAMPLE]})

    seq: int = Field(
        description="The event's number within its school: 1, 2, 3, ... without gaps, in "
        "commit order."
    )
    occurred_at: dt.datetime = Field(description="When the change was committed (UTC).")
    entity: str = Field(
        description="What kind of record changed: `school`, `api_key`, `group`, `student`, "
        "`guardian`, `staff`, or a link (`student_group`, `student_guardian`, `staff_group`)."
    )
    entity_id: uuid.UUID | None = Field(description="The record's id.")
    kind: str = Field(
        description="What happened: `created`, `updated`, `removed` (a link), `revoked` (a "
        "key), `matched` (paired with ESIS at activation, R2); `drift-opened`, `drift-updated`, "
        "`drift-closed`, `drift-accepted` (R5); `missing-in-esis`, `reappeared-in-esis` "
        "(R6). New kinds may be added; a follower should pass over ones it does "
        "not know."
    )
    changes: Changes = Field(
        description='Per field, what changed: usually `{"before": ..., "after": ...}`; for '
        'drift `{"ours": ..., "esis": ...}`, `{"reason": ...}` when drift closes; a plain '
        "value for a kind's own facts (`transition_id`, `to_year`, `reason`; `redacted` after "
        "a purge); empty when the kind says it all."
    )
    source: str = Field(
        description="Where the change came from: `esis` (a snapshot or accepted drift), "
        "`edexml` (an EDEXml import), `api` (a user's request), `system` (the service itself)."
    )
    actor: str | None = Field(
        description="Who made it: `key:<api key id>` for a request, `esis` for a snapshot."
    )
    sync_run_id: uuid.UUID | None = Field(
        description="The sync run that made the change, when a snapshot or pull did."
    )


class EventList(BaseModel):
    items: list[EventPublic] = Field(description="Events in ascending `seq`, oldest first.")
    next_cursor: str = Field(
        description="Pass as `after` to get the events that follow. Always present: the "
        "cursor of the last item, or the given `after` when there was nothing new. Store it "
        "to resume after a restart."
    )
