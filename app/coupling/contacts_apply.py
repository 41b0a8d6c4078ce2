"""Applying a guardian contact file's rows to the roster (`contacts.py` reads and matches
the file): each guardian found by e-mail address, else by name among the student's guardians,
is corrected; one not found is added, with its link; every change an edit by the admin."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy.orm import Session

from app.coupling import contacts_repository as repo
from app.coupling.contacts_csv import ContactRow
from app.db import new_id, utcnow
from app.events.service import Change, emit
from app.provenance import Source
from app.roster.models import Guardian, StudentGuardian


def fold(text: str | None) -> str:
    return " ".join((text or "").split()).casefold()


def guardian_identity(guardian: dict[str, Any], student: object) -> tuple[str, ...]:
    """One guardian per e-mail address; without one, per name and phone for one student."""
    if guardian.get("email"):
        return ("email", fold(guardian["email"]))
    return (
        "name",
        fold(guardian["last_name"]),
        fold(guardian.get("given_name") or guardian.get("initials")),
        fold(guardian.get("phone")),
        str(student),
    )


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
    by_email = {fold(g.email): g for g in guardians if g.email}
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
        identity = guardian_identity(values, student_id)
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
                    by_email[fold(guardian.email)] = guardian
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
    if values.get("email") and fold(values["email"]) in by_email:
        return by_email[fold(values["email"])], "email"
    # Without a known address: one of this student's guardians with the same name.
    given = fold(values.get("given_name") or values.get("initials"))
    for guardian_id in of_student.get(student_id, []):
        g = by_id.get(guardian_id)
        if g is None or fold(g.last_name) != fold(values["last_name"]):
            continue
        theirs = fold(g.given_name or g.initials)
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
