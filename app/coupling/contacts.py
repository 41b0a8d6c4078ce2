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
from app.coupling.contacts_csv import ContactFileError, ContactRow, read_contacts
from app.db import begin_write, new_id, utcnow
from app.errors import Conflict, Unprocessable
from app.esis.parsing import parse_snapshot
from app.esis.schemas import Kind
from app.events.service import Change, emit
from app.provenance import Source
from app.roster.models import Guardian, StudentGuardian
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


def _fold(text: str | None) -> str:
    return " ".join((text or "").split()).casefold()


def _names_match(row: ContactRow, c: Candidate) -> bool:
    wanted = _fold(row.student_last_name)
    # A spreadsheet often writes the prefix in the last-name column ("de Vries").
    if wanted not in (_fold(c.last_name), _fold(f"{c.name_prefix or ''} {c.last_name or ''}")):
        return False
    if row.student_given_name:
        given = {_fold(c.given_name), _fold((c.first_names or "").split(" ")[0])}
        return _fold(row.student_given_name) in given
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
            result["guardians"] = len({_identity(row.guardian(), ref) for row, ref in found})
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


def _identity(guardian: dict[str, Any], student: object) -> tuple[str, ...]:
    """One guardian per e-mail address; without one, per name and phone for one student."""
    if guardian.get("email"):
        return ("email", _fold(guardian["email"]))
    return (
        "name",
        _fold(guardian["last_name"]),
        _fold(guardian.get("given_name") or guardian.get("initials")),
        _fold(guardian.get("phone")),
        str(student),
    )


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


def apply(
    session: Session,
    school_id: uuid.UUID,
    entries: list[tuple[ContactRow, uuid.UUID]],
    *,
    actor: str,
    run_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    """Add or correct guardians and their links; every change an edit by `actor`."""
    now = utcnow()
    mark = {"by": actor, "at": now.isoformat()}
    guardians = repo.live_guardians(session=session, school_id=school_id)
    links = {
        (link.student_id, link.guardian_id): link
        for link in repo.live_guardian_links(session=session, school_id=school_id)
    }
    by_email = {_fold(g.email): g for g in guardians if g.email}
    of_student: dict[uuid.UUID, list[uuid.UUID]] = {}
    for student, guardian_id in links:
        of_student.setdefault(student, []).append(guardian_id)
    by_id = {g.id: g for g in guardians}
    report: dict[str, Any] = {"matched": [], "created": [], "updated": [], "unmatched": []}
    changes: list[Change] = []
    links_added = 0
    chosen: dict[tuple[str, ...], Guardian] = {}
    for row, student_id in entries:
        values = row.guardian()
        identity = _identity(values, student_id)
        guardian = chosen.get(identity)
        if guardian is None:
            guardian, by = _match(values, student_id, by_email, by_id, of_student)
            if guardian is None:
                guardian = Guardian(
                    school_id=school_id,
                    id=new_id(),
                    source=Source.CONTACTS.value,
                    local_edits={f: mark for f, v in values.items() if v},
                    created_at=now,
                    updated_at=now,
                    **values,
                )
                session.add(guardian)
                if guardian.email:
                    by_email[_fold(guardian.email)] = guardian
                by_id[guardian.id] = guardian
                changes.append(
                    Change(
                        "guardian",
                        guardian.id,
                        "created",
                        {f: {"before": None, "after": v} for f, v in values.items() if v},
                    )
                )
                report["created"].append(
                    {
                        "entity": "guardian",
                        "id": str(guardian.id),
                        "line": row.line,
                        "source": Source.CONTACTS.value,
                    }
                )
            else:
                report["matched"].append(
                    {
                        "entity": "guardian",
                        "id": str(guardian.id),
                        "line": row.line,
                        "by": by,
                        "previous_source": guardian.source,
                    }
                )
                _correct(guardian, values, mark, now, changes, report, row.line)
            chosen[identity] = guardian
        link = links.get((student_id, guardian.id))
        if link is None:
            link = StudentGuardian(
                school_id=school_id,
                id=new_id(),
                student_id=student_id,
                guardian_id=guardian.id,
                relation=row.relation,
                source=Source.CONTACTS.value,
                local_edits={"relation": mark} if row.relation else {},
                created_at=now,
                updated_at=now,
            )
            session.add(link)
            links[(student_id, guardian.id)] = link
            of_student.setdefault(student_id, []).append(guardian.id)
            links_added += 1
            changes.append(
                Change(
                    "student_guardian",
                    link.id,
                    "created",
                    {
                        "student_id": {"before": None, "after": str(student_id)},
                        "guardian_id": {"before": None, "after": str(guardian.id)},
                        "relation": {"before": None, "after": row.relation},
                    },
                )
            )
        elif row.relation and link.relation != row.relation:
            changes.append(
                Change(
                    "student_guardian",
                    link.id,
                    "updated",
                    {"relation": {"before": link.relation, "after": row.relation}},
                )
            )
            link.relation = row.relation
            link.local_edits = {**(link.local_edits or {}), "relation": mark}
            link.updated_at = now
    session.flush()
    emit(
        session=session,
        school_id=school_id,
        changes=changes,
        source=Source.CONTACTS.value,
        actor=actor,
        sync_run_id=run_id,
    )
    report["counts"] = {
        "matched": len(report["matched"]),
        "created": len(report["created"]),
        "updated": len(report["updated"]),
        "links_added": links_added,
        "unmatched": len(report["unmatched"]),
    }
    return report


def _match(
    values: dict[str, Any],
    student_id: uuid.UUID,
    by_email: dict[str, Guardian],
    by_id: dict[uuid.UUID, Guardian],
    of_student: dict[uuid.UUID, list[uuid.UUID]],
) -> tuple[Guardian | None, str]:
    if values.get("email") and _fold(values["email"]) in by_email:
        return by_email[_fold(values["email"])], "email"
    # Without a known address: one of this student's guardians with the same name.
    given = _fold(values.get("given_name") or values.get("initials"))
    for guardian_id in of_student.get(student_id, []):
        g = by_id.get(guardian_id)
        if g is None or _fold(g.last_name) != _fold(values["last_name"]):
            continue
        theirs = _fold(g.given_name or g.initials)
        if not given or not theirs or theirs == given or theirs[:1] == given[:1]:
            return g, "name"
    return None, ""


def _correct(
    guardian: Guardian,
    values: dict[str, Any],
    mark: dict[str, str],
    now: dt.datetime,
    changes: list[Change],
    report: dict[str, Any],
    line: int,
) -> None:
    diff = {
        f: {"before": getattr(guardian, f), "after": v}
        for f, v in values.items()
        if v and getattr(guardian, f) != v
    }
    if not diff:
        return
    for f, change in diff.items():
        setattr(guardian, f, change["after"])
    guardian.local_edits = {**(guardian.local_edits or {}), **dict.fromkeys(diff, mark)}
    guardian.updated_at = now
    guardian.version += 1
    changes.append(Change("guardian", guardian.id, "updated", diff))
    report["updated"].append({"id": str(guardian.id), "line": line, "fields": sorted(diff)})
