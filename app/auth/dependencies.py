"""Who may call what: bearer keys, roles, and the school a key belongs to."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from app.auth.models import Role
from app.auth.service import Principal, authenticate
from app.db import get_session
from app.errors import Forbidden, NotFound, Unauthorized
from app.schools import repository as schools
from app.schools.models import School

SessionDep = Annotated[Session, Depends(get_session, scope="function")]

# Role sets used by routes. The operator may do everything a school's admin may.
READ = frozenset({Role.READER, Role.ADMIN, Role.OPERATOR})
WRITE = frozenset({Role.ADMIN, Role.OPERATOR})
PUSH = frozenset({Role.ESIS})
OPERATOR_ONLY = frozenset({Role.OPERATOR})


bearer = HTTPBearer(
    auto_error=False,
    description="An API key: `Authorization: Bearer esk_...`. Keys have one role "
    "(`esis`, `reader`, `admin`, `operator`) and belong to one school (operator: all).",
)


def _read_session(request: Request) -> Session:
    # Auth reads in a short session of its own, so that the request's session (and on SQLite
    # its write lock) starts only when the handler's service needs it.
    factory: sessionmaker[Session] = request.app.state.sessionmaker
    return factory()


def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    if credentials is None or not credentials.credentials.strip():
        raise Unauthorized("send `Authorization: Bearer <api key>`")
    with _read_session(request) as session:
        principal = authenticate(session=session, secret=credentials.credentials.strip())
    if principal is None:
        raise Unauthorized("the API key is unknown or revoked")
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]


@dataclass(frozen=True)
class SchoolContext:
    """The school as read at authorization (detached: writers re-read it under its lock)."""

    school: School
    principal: Principal


class RoleGuard:
    """A dependency allowing the given roles; the auth matrix test reads `roles`."""

    def __init__(self, roles: frozenset[Role]) -> None:
        self.roles = roles

    def __call__(self, principal: PrincipalDep) -> Principal:
        if principal.role not in self.roles:
            raise Forbidden(f"role {principal.role.value!r} may not do this")
        return principal


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
            str, Path(description="The school's key: BRIN and branch code, e.g. `12AB00`.")
        ],
    ) -> SchoolContext:
        with _read_session(request) as session:
            row = schools.get_by_key(session=session, key=school.upper())
        if row is None or (principal.role != Role.OPERATOR and principal.school_id != row.id):
            raise NotFound(f"no school {school!r}")
        if principal.role not in self.roles:
            raise Forbidden(f"role {principal.role.value!r} may not do this")
        return SchoolContext(school=row, principal=principal)


def roles(allowed: frozenset[Role]) -> Callable[[PrincipalDep], Principal]:
    return RoleGuard(allowed)


def school_access(allowed: frozenset[Role]) -> Callable[..., SchoolContext]:
    return SchoolGuard(allowed)


ReadSchool = Annotated[SchoolContext, Depends(school_access(READ))]
WriteSchool = Annotated[SchoolContext, Depends(school_access(WRITE))]
PushSchool = Annotated[SchoolContext, Depends(school_access(PUSH))]
Operator = Annotated[Principal, Depends(roles(OPERATOR_ONLY))]
