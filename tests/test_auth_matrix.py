"""Every route of the app: no key 401, wrong role 403, another school's key 404.

The routes are read from the app itself, so a route added without a guard fails here.
"""

from __future__ import annotations

import copy
import enum
import uuid
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.auth.dependencies import RoleGuard
from app.auth.models import Role
from app.schools.dependencies import SchoolGuard
from tests.factories import SchoolKeys, auth, make_school, operator_key

PUBLIC = {"/healthz", "/readyz", "/metrics"}


def _guard(dependant: Dependant) -> RoleGuard | SchoolGuard | None:
    for dep in dependant.dependencies:
        if isinstance(dep.call, RoleGuard | SchoolGuard):
            return dep.call
        found = _guard(dep)
        if found is not None:
            return found
    return None


def _path(route: APIRoute, school: str) -> str:
    values: dict[str, Any] = {"school": school}
    for param in route.dependant.path_params:
        if param.name == "school":
            continue
        annotation = param.field_info.annotation
        if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
            values[param.name] = next(iter(annotation)).value
        elif annotation is uuid.UUID:
            values[param.name] = uuid.uuid4()
        else:
            values[param.name] = "1"
    return route.path.format(**values)


def _flatten(routes: Any, prefix: str = "") -> list[APIRoute]:
    """FastAPI keeps included routers as wrappers (`original_router`): walk into them. A
    router included in another router (the class arrangements in the roster's) keeps its
    routes without the outer router's prefix, which its wrapper's include context holds: the
    walk adds it, as FastAPI does when serving."""
    out: list[APIRoute] = []
    for route in routes:
        if isinstance(route, APIRoute):
            if prefix:
                route = copy.copy(route)
                route.path = prefix + route.path
            out.append(route)
        elif hasattr(route, "original_router"):
            nested = prefix + route.include_context.prefix
            out.extend(_flatten(route.original_router.routes, nested))
    return out


def _routes(app: FastAPI) -> list[APIRoute]:
    return _flatten(app.routes)


def test_the_walk_finds_every_documented_operation(app: FastAPI) -> None:
    """Guards the guard: the routes walked are exactly the operations in the OpenAPI."""
    walked = {(m, r.path) for r in _routes(app) for m in (r.methods or ())}
    documented = {
        (method.upper(), path) for path, item in app.openapi()["paths"].items() for method in item
    }
    assert walked == documented
    assert len(walked) >= 60


def _call(client: TestClient, method: str, path: str, secret: str | None) -> int:
    headers = auth(secret) if secret else {}
    body: dict[str, Any] | None = None if method in {"GET", "DELETE"} else {}
    return int(client.request(method, path, json=body, headers=headers).status_code)


def test_every_route_is_guarded(app: FastAPI) -> None:
    unguarded = [
        r.path for r in _routes(app) if r.path not in PUBLIC and _guard(r.dependant) is None
    ]
    assert unguarded == []


def test_auth_matrix_covers_every_route(
    app: FastAPI, client: TestClient, db: sessionmaker[Session]
) -> None:
    op = operator_key(db)
    school_a: SchoolKeys = make_school(client, db, brin="11AA", operator=op)
    school_b: SchoolKeys = make_school(client, db, brin="22BB", operator=op)
    checked = 0
    for route in _routes(app):
        if route.path in PUBLIC:
            continue
        guard = _guard(route.dependant)
        assert guard is not None
        path = _path(route, school_a.key)
        for method in sorted(route.methods or ()):
            where = f"{method} {route.path}"
            assert _call(client, method, path, None) == 401, where
            assert _call(client, method, path, "esk_not-a-key") == 401, where
            denied = [r for r in Role if r not in guard.roles]
            for role in denied:
                secret = op if role is Role.OPERATOR else school_a.for_role(role)
                assert _call(client, method, path, secret) == 403, f"{where} as {role}"
            if isinstance(guard, SchoolGuard):
                for role in guard.roles - {Role.OPERATOR}:
                    other = school_b.for_role(role)
                    assert _call(client, method, path, other) == 404, f"{where}: other school"
                missing = _path(route, "99ZZ00")
                allowed = next(iter(guard.roles))
                secret = op if allowed is Role.OPERATOR else school_a.for_role(allowed)
                assert _call(client, method, missing, secret) == 404, f"{where}: no such school"
            checked += 1
    assert checked == sum(len(r.methods or ()) for r in _routes(app) if r.path not in PUBLIC)
    assert checked >= 55
