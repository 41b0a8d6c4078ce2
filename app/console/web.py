"""The console's plumbing: rendering, the signed-in user, the school in scope, CSRF, errors."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from sqlalchemy.orm import Session, sessionmaker
from starlette.datastructures import FormData

from app.auth.models import Role
from app.config import Settings
from app.console import sessions
from app.console.i18n import LANG_COOKIE, LANGUAGES, Texts, pick_language
from app.db import begin_write
from app.errors import DomainError, Forbidden, NotFound
from app.schools import repository as schools
from app.schools.models import School

PREFIX = "/console"

templates = Environment(
    loader=PackageLoader("app.console", "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


class SignInRequired(Exception):
    """No session, or it expired: the handler sends the browser to the sign-in page."""


class CsrfRefused(Exception):
    """A form came without the session's CSRF token."""


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def sessions_of(request: Request) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = request.app.state.sessionmaker
    return factory


def idle_of(request: Request) -> dt.timedelta:
    return dt.timedelta(minutes=settings_of(request).console_idle_minutes)


def language(request: Request) -> str:
    return pick_language(
        request.query_params.get("lang"),
        request.cookies.get(LANG_COOKIE),
        request.headers.get("accept-language"),
    )


def texts(request: Request) -> Texts:
    return Texts(language(request), settings_of(request).tz)


def is_https(request: Request) -> bool:
    return request.url.scheme == "https"


def _with_lang(request: Request, lang: str) -> str:
    params = dict(request.query_params)
    params["lang"] = lang
    return f"{request.url.path}?{urlencode(params)}"


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any],
    *,
    user: sessions.ConsoleUser | None = None,
    status: int = 200,
) -> HTMLResponse:
    t = texts(request)
    page = templates.get_template(template).render(
        _=t,
        lang=t.lang,
        languages=[(code, _with_lang(request, code)) for code in LANGUAGES],
        user=user,
        flash=user.flash if user else None,
        csrf=user.csrf if user else "",
        path=request.url.path,
        **context,
    )
    response = HTMLResponse(page, status_code=status)
    response.headers["Cache-Control"] = "no-store"
    # Nothing of the console may be framed or load from elsewhere.
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    chosen = request.query_params.get("lang")
    if chosen in LANGUAGES:
        response.set_cookie(
            LANG_COOKIE,
            chosen,
            max_age=365 * 24 * 3600,
            path=PREFIX,
            samesite="strict",
            secure=is_https(request),
            httponly=True,
        )
    return response


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


# --- the signed-in user -------------------------------------------------------------------


def current_user(request: Request) -> sessions.ConsoleUser:
    token = request.cookies.get(sessions.COOKIE)
    if not token:
        raise SignInRequired
    # A short write transaction of its own (expiry, last seen, the flash read once), ended
    # before the page's services open theirs.
    with sessions_of(request)() as session:
        begin_write(session)
        user = sessions.resolve(session=session, token=token, idle=idle_of(request))
        session.commit()
    if user is None:
        raise SignInRequired
    return user


User = Annotated[sessions.ConsoleUser, Depends(current_user)]


def flash(request: Request, user: sessions.ConsoleUser, msgid: str, **values: Any) -> None:
    """Leave a message for the next page (kind `ok`, or `error` with `detail`)."""
    kind = "error" if "detail" in values else "ok"
    with sessions_of(request)() as session:
        begin_write(session)
        sessions.set_flash(
            session=session,
            session_id=user.session_id,
            flash={"kind": kind, "msgid": msgid, "values": values},
        )
        session.commit()


def error_flash(request: Request, user: sessions.ConsoleUser, exc: DomainError) -> None:
    flash(request, user, "error.service", detail=exc.detail)


async def checked_form(request: Request, user: User) -> FormData:
    """The posted form, once its CSRF token is the session's."""
    form = await request.form()
    if not sessions.csrf_matches(user.csrf, form.get("csrf")):
        raise CsrfRefused
    return form


Form = Annotated[FormData, Depends(checked_form)]


# --- the school in scope ------------------------------------------------------------------


@dataclass(frozen=True)
class SchoolPage:
    school: School
    user: sessions.ConsoleUser

    @property
    def base(self) -> str:
        return f"{PREFIX}/schools/{quote(self.school.key)}"


def school_page(request: Request, user: User, school: str) -> SchoolPage:
    """The school of the user's key (or any, for the operator); another school is a 404, as
    in the API: other schools are invisible, not forbidden."""
    with sessions_of(request)() as session:
        row = schools.get_by_key(session=session, key=school.upper())
    principal = user.principal
    if row is None or (principal.role != Role.OPERATOR and principal.school_id != row.id):
        raise NotFound(f"no school {school!r}")
    return SchoolPage(school=row, user=user)


SchoolScope = Annotated[SchoolPage, Depends(school_page)]


def writable(page: SchoolPage) -> None:
    if not page.user.can_write:
        raise Forbidden("this key may read, not change")


def operator_only(user: sessions.ConsoleUser) -> None:
    if not user.is_operator:
        raise NotFound("no such page")


def parse_ids(values: list[Any]) -> list[uuid.UUID]:
    out = []
    for value in values:
        try:
            out.append(uuid.UUID(str(value)))
        except ValueError:
            continue
    return out


def sign_in_redirect(request: Request) -> Response:
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    response = redirect(f"{PREFIX}/login?{urlencode({'next': target})}")
    response.delete_cookie(sessions.COOKIE, path=PREFIX)
    return response
