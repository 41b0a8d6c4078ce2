from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, computed_field

from app.sync.models import KeyChangeStatus, RunKind, RunStatus

Key = Annotated[str, Field(max_length=256, description="The record's LAS key.")]
EntityName = Annotated[
    str,
    Field(
        max_length=32,
        pattern="^[a-z_]+$",
        description="`group`, `student`, `guardian`, `staff` or a link.",
    ),
]
Count = Annotated[int, Field(ge=0, le=10_000_000)]


class EntityCounts(BaseModel):
    added: Count = Field(description="New records or links from ESIS (R4).")
    updated: Count = Field(
        description="ESIS values applied (groups; persons under apply_unedited)."
    )
    unchanged: Count
    matched: Count = Field(description="Existing records paired with ESIS at activation (R2).")
    drift_opened: Count = Field(description="ESIS changes not applied, now open as drift (R5).")
    drift_closed: Count = Field(description="Drift that ESIS took back or that was applied.")
    missing: Count = Field(description="Records ESIS stopped listing this run; they stay (R6).")
    reappeared: Count = Field(description="Records ESIS lists again after being missing.")
    suppressed: Count = Field(description="Records deleted locally that ESIS still lists (R6).")
    moved: Count = Field(description="Students moved to another main group (apply_unedited).")
    removed: Count = Field(
        default=0, description="Removed at the year transition (R7-R9), or links that ended."
    )


class MatchedRecord(BaseModel):
    entity: EntityName
    id: uuid.UUID
    key: Key
    by: Literal["key", "name_birth_date", "email"] = Field(description="How it was matched.")
    previous_source: str = Field(max_length=16, description="`edexml` or `local`.")


class CreatedRecord(BaseModel):
    entity: EntityName
    id: uuid.UUID
    key: Key


class UnmatchedRecord(BaseModel):
    entity: EntityName
    id: uuid.UUID
    source: str = Field(max_length=16)
    esis_key: str | None = Field(max_length=64)


class ContactGuardian(BaseModel):
    id: uuid.UUID = Field(description="The guardian in the roster.")
    line: int = Field(ge=1, description="The contact file's line that named it first.")
    by: Literal["email", "name"] | None = Field(
        default=None, description="Matched: by e-mail address, or by name among the student's."
    )
    previous_source: str | None = Field(default=None, max_length=16)
    fields: list[str] = Field(default_factory=list, description="Corrected: the fields changed.")


class ContactUnmatched(BaseModel):
    line: int = Field(ge=1)
    student_key: str = Field(max_length=256)
    reason: str = Field(max_length=500)


class ContactCounts(BaseModel):
    matched: Count
    created: Count
    updated: Count
    links_added: Count
    unmatched: Count


class ContactReport(BaseModel):
    """What a guardian contact file did: guardians matched to the roster's (and corrected),
    created (source `contacts`), and rows whose student is not in the roster."""

    matched: list[ContactGuardian] = Field(max_length=1_000_000)
    created: list[ContactGuardian] = Field(max_length=1_000_000)
    updated: list[ContactGuardian] = Field(max_length=1_000_000)
    unmatched: list[ContactUnmatched] = Field(max_length=1_000_000)
    counts: ContactCounts


class ActivationReport(BaseModel):
    """R2: how the records already here were paired with ESIS's."""

    matched: list[MatchedRecord] = Field(max_length=1_000_000)
    created: list[CreatedRecord] = Field(max_length=1_000_000)
    unmatched: list[UnmatchedRecord] = Field(
        max_length=1_000_000, description="Records here that ESIS does not list (kept)."
    )
    contacts: ContactReport | None = Field(
        default=None,
        description="For a school whose ESIS sends no guardians: the kept contact file's "
        "guardians matched to the roster just loaded.",
    )


class ImportReport(BaseModel):
    """An EDEXml import: what the file no longer lists."""

    absent: list[CreatedRecord] = Field(max_length=1_000_000)
    removed: Count = Field(description="Of those, soft-deleted (`remove_missing=true`).")
    remove_missing: bool


class YearTransitionRunReport(BaseModel):
    year_transition_id: uuid.UUID = Field(description="The transition this run started.")


class GuardJudged(BaseModel):
    records: Count = Field(description="Live records of the kind here (the denominator).")
    updated: Count
    missing: Count


class GuardSharesPublic(BaseModel):
    update: float = Field(description="The school's `change_guard_update_share`.")
    missing: float = Field(description="The school's `change_guard_missing_share`.")


class GuardReport(BaseModel):
    reasons: list[Annotated[str, Field(max_length=2000)]] = Field(max_length=100)
    shares: GuardSharesPublic
    floor: Count = Field(description="Kinds with fewer live records are not judged.")
    judged: dict[str, GuardJudged] = Field(description="Per kind the snapshot carries.")
    would: dict[str, EntityCounts] = Field(description="The counts the merge would have had.")


class GuardDecision(BaseModel):
    by: str = Field(max_length=64)
    at: dt.datetime
    confirmed: bool


class GuardRunReport(BaseModel):
    """A snapshot the change guard held (docs/merge.md, "The change guard")."""

    guard: GuardReport
    decision: GuardDecision | None = Field(
        default=None, description="The admin's confirmation or rejection, once given."
    )


class RunError(BaseModel):
    """The problem that failed a run, as a client would have seen it."""

    status: int = Field(ge=400, le=599)
    slug: str = Field(max_length=64, pattern="^[a-z-]+$", description="`/problems/<slug>`.")
    title: str = Field(max_length=200)
    detail: str | None = Field(default=None, max_length=10000)
    extra: dict[str, Any] = Field(
        default_factory=dict,
        description="The problem's extra members (`errors`, `kind`, `attempts`, ...): see "
        "`Problem`.",
    )


class KeptRecordPublic(BaseModel):
    entity: EntityName
    key: Key
    field: str = Field(max_length=200, description="The field (or element) that was unusable.")
    reason: str = Field(max_length=500)


class SyncRunPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    kind: RunKind = Field(
        description="`merge` for a snapshot, `activation` for R2's initial load, "
        "`year_transition` for an admin's start or confirmation of one (R7-R11)."
    )
    origin: str = Field(description="`push` (ESIS sent it) or `pull` (fetched from ESIS).")
    status: RunStatus = Field(
        description="`applied`; `stored` (coupling inactive: kept for R1/R2); `held` (a new "
        "school year: waits for the year transition; inside the pause window; or above the "
        "change guard: waits for an admin to confirm or reject it); `rejected` (held by the "
        "change guard and rejected: nothing applied); `failed` (nothing changed); `received` "
        "(stored, being applied)."
    )
    snapshot_id: uuid.UUID | None
    started_at: dt.datetime
    finished_at: dt.datetime | None
    counts: dict[str, EntityCounts] = Field(
        description="Per entity (`group`, `student`, `guardian`, `staff`, `student_group`, "
        "`student_guardian`, `staff_group`)."
    )
    warnings: list[Annotated[str, Field(max_length=2000)]] = Field(max_length=100_000)
    error: RunError | None = Field(description="The problem that failed the run.")
    kept: list[KeptRecordPublic] = Field(
        default_factory=list,
        max_length=1_000_000,
        description="Records the snapshot held with a value that cannot be used (an "
        "impossible date, a key longer than allowed, a year level out of range), and the "
        "records that depend on them: left exactly as they are (not updated, not added, not "
        "marked missing). See docs/merge.md.",
    )
    report: ActivationReport | ImportReport | YearTransitionRunReport | GuardRunReport | None = (
        Field(
            description="An activation's matching (R2), an EDEXml import's absent records, the "
            "year transition a run started, or why the change guard held it; null for a plain "
            "merge."
        )
    )

    @computed_field(  # type: ignore[prop-decorator]
        description="`applied` with records left as they are (`kept`): look at them."
    )
    @property
    def applied_with_warnings(self) -> bool:
        return self.status == RunStatus.APPLIED and bool(self.kept)


class SyncRunList(BaseModel):
    items: list[SyncRunPublic]
    next_cursor: str | None


class Gap(BaseModel):
    key: Key
    name: str = Field(max_length=1000)


class GapList(BaseModel):
    count: Count
    items: list[Gap] = Field(max_length=1_000_000)


class ReadinessPublic(BaseModel):
    ready: bool = Field(description="True when activation (R2) would be accepted.")
    snapshot_id: uuid.UUID | None = Field(description="The snapshot checked: the latest valid one.")
    received_at: dt.datetime | None
    school_year: str | None = Field(max_length=9, pattern=r"^\d{4}-\d{4}$")
    students_without_guardian: GapList
    guardians_without_email: GapList


# A field's value as stored (JSON): text, a date as text, a number, a flag, or nothing. The
# schema is published; the value is passed through as stored.
DriftValue = Annotated[
    Any,
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "maxLength": 2000},
                {"type": "integer", "format": "int64"},
                {"type": "number", "format": "double"},
                {"type": "boolean"},
                {"type": "null"},
            ]
        }
    ),
]
DriftEntity = Literal["group", "student", "guardian", "staff", "student_guardian"]


class DriftItemPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    entity: DriftEntity
    record_id: uuid.UUID
    field: str = Field(
        max_length=64, description="The field ESIS changed; `group` is a student's main group."
    )
    our_value: DriftValue = Field(
        description="The value here (a local edit, or ESIS's earlier value)."
    )
    esis_value: DriftValue = Field(description="The value ESIS sends now.")
    first_seen_at: dt.datetime
    last_seen_at: dt.datetime


class DriftList(BaseModel):
    items: list[DriftItemPublic]
    next_cursor: str | None


class DriftFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    entity: DriftEntity | None = None
    field: str | None = Field(default=None, max_length=64)
    record_id: uuid.UUID | None = None


class DriftAccept(BaseModel):
    """Give `ids`, or a `filter` (all open drift matching it). Not both."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"filter": {"entity": "guardian", "field": "phone"}}]},
    )

    ids: list[uuid.UUID] | None = Field(default=None, max_length=10000)
    filter: DriftFilter | None = None


class DriftAccepted(BaseModel):
    accepted: Count
    ids: list[uuid.UUID] = Field(max_length=1_000_000)


class KeyChangePublic(BaseModel):
    """A proposal: ESIS dropped `old_key` and sent `new_key` for what looks like the same
    person. Only keys: look the record up by `record_id` to see who it is."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    entity: Literal["student", "guardian", "staff"]
    record_id: uuid.UUID = Field(description="The record that would take the new key.")
    old_key: str = Field(
        max_length=256, description="The key the record has now, which ESIS no longer sends."
    )
    new_key: str = Field(max_length=256, description="The key ESIS sends for the same person now.")
    matched_by: Literal["name_birth_date", "email"]
    status: KeyChangeStatus = Field(
        description="`proposed` (waiting), `accepted`, `rejected` (the two are missing + new "
        "from the next snapshot on) or `superseded` (another proposal for the record or key "
        "was accepted)."
    )
    proposed_at: dt.datetime
    run_id: uuid.UUID | None = Field(description="The sync run that first proposed it.")
    decided_at: dt.datetime | None
    decided_by: str | None = Field(max_length=64)


class KeyChangeList(BaseModel):
    items: list[KeyChangePublic] = Field(max_length=1000)
    next_cursor: str | None
