"""Signing in and out: an API key exchanged for a session cookie."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from app.console import sessions
from app.console.web import (
    PREFIX,
    Form,
    User,
    idle_of,
    is_https,
    redirect,
    render,
    sessions_of,
)
from app.db import begin_write
from app.schools.models import School

router = APIRouter()
LOGIN_COOKIE = "console_login"


def _safe_next(target: str | None) -> str | None:
    # Only a page of the console: never another site (`//host`, `https://...`).
    if not target or not target.startswith(PREFIX + "/"):
        return None
    return None if "\\" in target or "://" in target else target


def _login_page(request: Request, next_: str | None, error: str | None, status: int) -> Response:
    # Before there is a session, the form's CSRF token is a double-submitted cookie.
    token = secrets.token_urlsafe(32)
    response = render(
        request,
        "login.html",
        {"next": next_ or "", "error": error, "login_csrf": token},
        status=status,
    )
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        max_age=3600,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )
    return response


@router.get("/login")
def login_form(
    request: Request, next_: Annotated[str | None, Query(alias="next", max_length=2000)] = None
) -> Response:
    return _login_page(request, _safe_next(next_), None, 200)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    next_ = _safe_next(str(form.get("next") or ""))
    expected = request.cookies.get(LOGIN_COOKIE)
    if not expected or not sessions.csrf_matches(expected, form.get("csrf")):
        return _login_page(request, next_, "login.error.csrf", 403)
    secret = str(form.get("key") or "")
    try:
        with sessions_of(request)() as session:
            begin_write(session)
            token, _principal = sessions.sign_in(
                session=session, secret=secret, idle=idle_of(request)
            )
            session.commit()
    except sessions.SignInRefused as refused:
        return _login_page(request, next_, f"login.error.{refused.reason}", 401)
    response = redirect(next_ or f"{PREFIX}/")
    response.set_cookie(
        sessions.COOKIE,
        token,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )
    response.delete_cookie(LOGIN_COOKIE, path=PREFIX)
    return response


@router.get("/")
def home(request: Request, user: User) -> Response:
    if user.is_operator:
        return redirect(f"{PREFIX}/schools")
    with sessions_of(request)() as session:
        school = session.get_one(School, user.principal.school_id)
    return redirect(f"{PREFIX}/schools/{school.key}")


@router.post("/logout")
def logout(request: Request, user: User, _form: Form) -> Response:
    with sessions_of(request)() as session:
        begin_write(session)
        sessions.sign_out(session=session, session_id=user.session_id)
        session.commit()
    response = redirect(f"{PREFIX}/login")
    response.delete_cookie(sessions.COOKIE, path=PREFIX)
    return response
