"""The school a request acts on: `{school}` resolved for a key of that school (or the operator)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Request

from app.auth.dependencies import PUSH, READ, WRITE, PrincipalDep, read_session
from app.auth.models import Role
from app.auth.service import Principal
from app.db import SessionDep
from app.errors import Forbidden, NotFound
from app.schools import repository as schools
from app.schools.models import School

SCHOOL_KEY_PATTERN = r"^[0-9]{2}[A-Za-z]{2}[0-9]{2}$"

__all__ = ["PushSchool", "ReadSchool", "SchoolContext", "SchoolGuard", "SessionDep", "WriteSchool"]


@dataclass(frozen=True)
class SchoolContext:
    """The school as read at authorization (detached: writers re-read it under its lock)."""

    school: School
    principal: Principal


class SchoolGuard:
    """Resolve `{school}` for a key of that school (or the operator) with one of `roles`.

    Another school's key gets 404: other schools' data is invisible, not forbidden.
    """

    def __init__(self, roles: frozenset[Role]) -> None:
        self.roles = roles

    def __call__(
        self,
        request: Request,
        principal: PrincipalDep,
        school: Annotated[
            str,
            Path(
                description="The school's key: BRIN and branch code, e.g. `12AB00` (any case).",
                min_length=6,
                max_length=6,
                pattern=SCHOOL_KEY_PATTERN,
            ),
        ],
    ) -> SchoolContext:
        with read_session(request) as session:
            row = schools.get_by_key(session=session, key=school.upper())
        if row is None or (principal.role != Role.OPERATOR and principal.school_id != row.id):
            raise NotFound(f"no school {school!r}")
        if principal.role not in self.roles:
            raise Forbidden(f"role {principal.role.value!r} may not do this")
        return SchoolContext(school=row, principal=principal)


def school_access(allowed: frozenset[Role]) -> Callable[..., SchoolContext]:
    return SchoolGuard(allowed)


ReadSchool = Annotated[SchoolContext, Depends(school_access(READ))]
WriteSchool = Annotated[SchoolContext, Depends(school_access(WRITE))]
PushSchool = Annotated[SchoolContext, Depends(school_access(PUSH))]
