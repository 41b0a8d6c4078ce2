"""Who is calling: bearer keys and roles. The school a key may reach: `app.schools.dependencies`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from app.auth.models import Role
from app.auth.service import Principal, authenticate
from app.errors import Forbidden, Unauthorized

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


def read_session(request: Request) -> Session:
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
    with read_session(request) as session:
        principal = authenticate(session=session, secret=credentials.credentials.strip())
    if principal is None:
        raise Unauthorized("the API key is unknown or revoked")
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]


class RoleGuard:
    """A dependency allowing the given roles; the auth matrix test reads `roles`."""

    def __init__(self, roles: frozenset[Role]) -> None:
        self.roles = roles

    def __call__(self, principal: PrincipalDep) -> Principal:
        if principal.role not in self.roles:
            raise Forbidden(f"role {principal.role.value!r} may not do this")
        return principal


def roles(allowed: frozenset[Role]) -> Callable[[PrincipalDep], Principal]:
    return RoleGuard(allowed)


Operator = Annotated[Principal, Depends(roles(OPERATOR_ONLY))]
