"""Guardian contact files: where a school keeps parents' addresses when ESIS does not send them.

ESIS leads for what ESIS sends: a file is refused (409) while the school's latest snapshot
carries guardians. Otherwise, before activation the file is kept (one per school, the latest
wins): it feeds readiness (R1) and is matched at activation (R2). After activation it is
applied at once. Either way its guardians are edits by the admin who uploaded it: source
`contacts`, each field it sets marked as a local edit with that admin, events emitted; so a
later ESIS that does send guardians does not silently overwrite them (R5).

Students are found by key, or by last name and birth date (and given name, when the file has
it): a student that is not found, or that two students match, is a problem of the file,
never a guess. A refused file changes nothing.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.coupling import contacts_repository as repo
from app.coupling.contacts_apply import apply, fold, guardian_identity
from app.coupling.contacts_csv import ContactFileError, ContactRow, read_contacts
from app.db import begin_write
from app.errors import Conflict, Unprocessable
from app.esis.parsing import parse_snapshot
from app.esis.schemas import Kind
from app.schools import repository as schools
from app.schools.models import CouplingState
from app.sync.repository import latest_snapshot

FIELDS = ("last_name", "name_prefix", "initials", "given_name", "email", "phone")


@dataclass(frozen=True)
class Candidate:
    ref: str  # the student's key before activation, its roster id after
    key: str | None
    last_name: str | None
    name_prefix: str | None
    given_name: str | None
    first_names: str | None
    birth_date: dt.date | None


def _names_match(row: ContactRow, c: Candidate) -> bool:
    wanted = fold(row.student_last_name)
    # A spreadsheet often writes the prefix in the last-name column ("de Vries").
    if wanted not in (fold(c.last_name), fold(f"{c.name_prefix or ''} {c.last_name or ''}")):
        return False
    if row.student_given_name:
        given = {fold(c.given_name), fold((c.first_names or "").split(" ")[0])}
        return fold(row.student_given_name) in given
    return True


def resolve(
    rows: Iterable[ContactRow], candidates: list[Candidate], columns: dict[str, int]
) -> tuple[list[tuple[ContactRow, str]], list[dict[str, Any]]]:
    """Each row's student, or a problem naming the line; never a guess."""
    by_key = {c.key: c for c in candidates if c.key}
    found: list[tuple[ContactRow, str]] = []
    problems: list[dict[str, Any]] = []
    for row in rows:
        if row.student_key:
            c = by_key.get(row.student_key)
            if c is None:
                problems.append(
                    {
                        "line": row.line,
                        "column": columns.get("student_key"),
                        "message": f"no student with key {row.student_key!r} at this school",
                    }
                )
            else:
                found.append((row, c.ref))
            continue
        hits = [c for c in candidates if c.birth_date == row.birth_date and _names_match(row, c)]
        if len(hits) == 1:
            found.append((row, hits[0].ref))
            continue
        problems.append(
            {
                "line": row.line,
                "column": columns.get("student_last_name"),
                "message": "no student with this last name and birth date"
                if not hits
                else f"{len(hits)} students have this name and birth date: give the student key",
            }
        )
    return found, problems


def _roster_candidates(session: Session, school_id: uuid.UUID, *, by_key: bool) -> list[Candidate]:
    students = repo.live_students(session=session, school_id=school_id, tombstoned=False)
    return [
        Candidate(
            (s.esis_key or "") if by_key else str(s.id),
            s.esis_key,
            s.last_name,
            s.name_prefix,
            s.given_name,
            s.first_names,
            s.birth_date,
        )
        for s in students
        if not by_key or s.esis_key
    ]


def _snapshot_candidates(session: Session, school_id: uuid.UUID) -> tuple[list[Candidate], bool]:
    """Students of the latest snapshot (else the roster's keyed ones); whether it carries
    guardians."""
    row = latest_snapshot(session=session, school_id=school_id)
    out: dict[str, Candidate] = {}
    carries = False
    if row is not None:
        snapshot = parse_snapshot(row.body, row.content_type).snapshot
        carries = Kind.GUARDIANS in snapshot.scope
        for s in snapshot.students:
            out[s.key] = Candidate(
                s.key, s.key, s.last_name, s.name_prefix, s.given_name, s.first_names, s.birth_date
            )
    for c in _roster_candidates(session, school_id, by_key=True):
        out.setdefault(c.ref, c)
    return list(out.values()), carries


def _refused(problems: list[dict[str, Any]]) -> Unprocessable:
    # `field` as every problem has it (Problem.errors); `line` and `column` for a file.
    problems = [{"field": _where(p), **p} for p in problems]
    first = problems[0]
    where = f"line {first['line']}" if first.get("line") else "the file"
    return Unprocessable(
        f"the contact file is refused, nothing was applied: {where}: {first['message']}"
        + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
        errors=problems,
    )


def _where(problem: dict[str, Any]) -> str:
    if not problem.get("line"):
        return "body"
    column = f", column {problem['column']}" if problem.get("column") else ""
    return f"line {problem['line']}{column}"


def import_contacts(
    *,
    sessions: sessionmaker[Session],
    school_id: uuid.UUID,
    body: bytes,
    dry_run: bool,
    actor: str,
) -> dict[str, Any]:
    try:
        parsed = read_contacts(body)
    except ContactFileError as exc:
        raise _refused(exc.problems) from None
    with sessions() as session:
        begin_write(session)
        school = schools.lock(session=session, school_id=school_id)
        candidates, carries = _snapshot_candidates(session, school_id)
        if carries:
            raise Conflict(
                "ESIS leads for guardians: this school's ESIS sends them, so a contact file "
                "may not add or change them (R4)"
            )
        active = school.coupling == CouplingState.ACTIVE.value
        if active:
            candidates = _roster_candidates(session, school_id, by_key=False)
        found, problems = resolve(parsed.rows, candidates, parsed.columns)
        if problems:
            raise _refused(problems)
        result: dict[str, Any] = {"dry_run": dry_run, "rows": len(found)}
        if active:
            result["applied"] = True
            result["report"] = apply(
                session,
                school_id,
                [(row, uuid.UUID(ref)) for row, ref in found],
                actor=actor,
            )
        else:
            rows = [{**_stored(row), "student_key": ref} for row, ref in found]
            repo.keep_contact_file(
                session=session, school_id=school_id, rows=rows, uploaded_by=actor
            )
            result["applied"] = False
            result["stored_for_activation"] = True
            result["students"] = len({ref for _, ref in found})
            result["guardians"] = len(
                {guardian_identity(row.guardian(), ref) for row, ref in found}
            )
        if dry_run:
            session.rollback()
        else:
            session.commit()
    return result


def _stored(row: ContactRow) -> dict[str, Any]:
    # The student's name and birth date only served to find it: they are not kept.
    return {"line": row.line, "relation": row.relation, **row.guardian()}


def _row_of(data: dict[str, Any]) -> ContactRow:
    return ContactRow(
        line=data["line"],
        student_key=data["student_key"],
        student_last_name=None,
        student_given_name=None,
        birth_date=None,
        relation=data.get("relation"),
        last_name=data["last_name"],
        name_prefix=data.get("name_prefix"),
        initials=data.get("initials"),
        given_name=data.get("given_name"),
        email=data.get("email"),
        phone=data.get("phone"),
    )


def stored_rows(session: Session, school_id: uuid.UUID) -> list[dict[str, Any]]:
    """The kept file's rows (each with `student_key`), for readiness and activation."""
    found = repo.contact_file(session=session, school_id=school_id)
    return list(found.rows) if found is not None else []


def match_at_activation(
    session: Session, school_id: uuid.UUID, *, actor: str, run_id: uuid.UUID
) -> dict[str, Any] | None:
    """R2 for contact files: the kept file's guardians matched to the roster just loaded."""
    rows = stored_rows(session, school_id)
    if not rows:
        return None
    ids = {
        s.esis_key: s.id
        for s in repo.live_students(session=session, school_id=school_id)
        if s.esis_key
    }
    entries = [(_row_of(r), ids[r["student_key"]]) for r in rows if r["student_key"] in ids]
    report = apply(session, school_id, entries, actor=actor, run_id=run_id)
    report["unmatched"].extend(
        {
            "entity": "contact",
            "line": r["line"],
            "student_key": r["student_key"],
            "reason": "the student is not in the roster after the initial load",
        }
        for r in rows
        if r["student_key"] not in ids
    )
    repo.drop_contact_file(session=session, school_id=school_id)
    return report
