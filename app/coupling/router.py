"""ESIS's side of the API: snapshot push, readiness (R1) and activation (R2)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from app.config import Settings
from app.coupling import (
    activation,
    contacts,
    contacts_csv,
    export,
    health,
    imports,
    pulls,
    signing,
)
from app.coupling.models import EsisConnection
from app.coupling.receive import PushLimits, Received, receive_snapshot
from app.coupling.schemas import (
    EDEXML_BODY,
    REPLAYED,
    SNAPSHOT_BODY,
    WEBHOOK_HEADERS,
    XML_BINARY,
    CertificateInfo,
    ConnectionPublic,
    ConnectionPut,
    ContactImportPublic,
)
from app.coupling.signing import SignatureRefused
from app.errors import (
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    TooManyRequests,
    Unauthorized,
    Unprocessable,
    UnsupportedMediaType,
    problem_responses,
)
from app.esis.parsing import XML_TYPES, media_type
from app.schools.dependencies import PushSchool, SchoolContext, SessionDep, WriteSchool
from app.schools.schemas import SchoolPublic
from app.sync.schemas import Gap, GapList, ReadinessPublic, SyncRunPublic

router = APIRouter(prefix="/api/v1/schools/{school}/esis", tags=["esis"])
AUTH = (Unauthorized, Forbidden, NotFound)


@router.post(
    "/snapshots",
    status_code=status.HTTP_201_CREATED,
    summary="Push a full ESIS snapshot",
    description=(
        "ESIS sends everything it knows of the school (R3: push and pull take the same path). "
        "The raw body is stored on receipt, then validated and applied in one transaction "
        "under the school's lock: new records and links are added (R4), changes to existing "
        "persons become drift (R5), absent records stay and are marked missing (R6). Before "
        "activation the snapshot is only stored (R1, R2). The same body as the school's "
        "latest snapshot, or the same `Idempotency-Key` (or `webhook-id`), is applied once: "
        "the answer is then the first run, with status 200 and `Idempotent-Replayed: true`. "
        "Schools with a signing secret need Standard Webhooks signatures (401 otherwise); more "
        "than the per-minute limit of new snapshots gets 429 with `Retry-After`."
    ),
    openapi_extra={"requestBody": SNAPSHOT_BODY, "parameters": WEBHOOK_HEADERS},
    responses={
        200: {
            "model": SyncRunPublic,
            "description": "Received before: the first run.",
            "headers": REPLAYED,
        },
        201: {"description": "Received: the run it made."},
        **problem_responses(
            *AUTH,
            SignatureRefused,
            Conflict,
            PayloadTooLarge,
            UnsupportedMediaType,
            Unprocessable,
            TooManyRequests,
        ),
    },
)
async def push_snapshot(
    request: Request,
    response: Response,
    ctx: PushSchool,
    idempotency_key: Annotated[
        str | None,
        Header(max_length=200, description="Makes a retry safe: applied once per key."),
    ] = None,
) -> SyncRunPublic:
    body = await request.body()
    # The signature and the snapshot in one trip to the thread pool (each trip is a wait).
    received = await run_in_threadpool(_verify_and_receive, request, ctx, body, idempotency_key)
    if received.replayed:
        response.status_code = status.HTTP_200_OK
        response.headers["Idempotent-Replayed"] = "true"
    return SyncRunPublic.model_validate(received.run)


def push_limits(settings: Settings) -> PushLimits:
    return PushLimits(
        max_records=settings.max_snapshot_records,
        per_minute=settings.push_rate_per_minute,
        refused_budget_bytes=settings.refused_body_budget_bytes,
        refused_keep=dt.timedelta(hours=settings.refused_body_keep_hours),
    )


def _verify_and_receive(
    request: Request, ctx: SchoolContext, body: bytes, idempotency_key: str | None
) -> Received:
    settings = request.app.state.settings
    webhook_id = _verify_signature(request, ctx.school.id, body)
    if webhook_id is not None:
        # A signed push is identified by its signed `webhook-id` alone: an Idempotency-Key
        # added to a captured push (it is not signed) must not make it new.
        idempotency_key = f"webhook:{webhook_id}"[:200]
    return receive_snapshot(
        sessions=request.app.state.sessionmaker,
        school_id=ctx.school.id,
        body=body,
        content_type=request.headers.get("content-type", ""),
        idempotency_key=idempotency_key,
        origin="push",
        actor=ctx.principal.actor,
        today=dt.datetime.now(settings.tz).date(),
        limits=push_limits(settings),
    )


def _verify_signature(request: Request, school_id: uuid.UUID, body: bytes) -> str | None:
    with request.app.state.sessionmaker() as session:
        return signing.verify(
            session=session,
            settings=request.app.state.settings,
            school_id=school_id,
            headers=request.headers,
            body=body,
        )


class SigningSecretPublic(BaseModel):
    id: uuid.UUID
    prefix: str = Field(description="The first characters, to recognise the secret.")
    created_at: dt.datetime
    created_by: str


class SigningSecretCreated(SigningSecretPublic):
    secret: str = Field(
        description="`whsec_...`: give it to the ESIS push client. Shown only in this response."
    )


class SigningSecretList(BaseModel):
    items: list[SigningSecretPublic]


@router.post(
    "/signing-secrets",
    status_code=status.HTTP_201_CREATED,
    summary="Create a push signing secret",
    description="Once a school has an active signing secret, every push must be signed with "
    "one of them (Standard Webhooks 1.0: `webhook-id`, `webhook-timestamp`, "
    "`webhook-signature`); unsigned, wrongly signed or stale pushes (5 minutes) get 401. "
    "Several secrets may be active at once, to rotate without downtime. The secret is shown "
    "once and stored encrypted.",
    responses=problem_responses(*AUTH),
)
def create_signing_secret(
    request: Request, ctx: WriteSchool, session: SessionDep
) -> SigningSecretCreated:
    row, secret = signing.create(
        session=session,
        settings=request.app.state.settings,
        school_id=ctx.school.id,
        actor=ctx.principal.actor,
    )
    return SigningSecretCreated(
        id=row.id,
        prefix=row.prefix,
        created_at=row.created_at,
        created_by=row.created_by,
        secret=secret,
    )


@router.get(
    "/signing-secrets",
    summary="List active push signing secrets",
    description="Ids and prefixes only; the secrets themselves are never shown again.",
    responses=problem_responses(*AUTH),
)
def list_signing_secrets(ctx: WriteSchool, session: SessionDep) -> SigningSecretList:
    rows = signing.active(session=session, school_id=ctx.school.id)
    return SigningSecretList(
        items=[
            SigningSecretPublic(
                id=r.id, prefix=r.prefix, created_at=r.created_at, created_by=r.created_by
            )
            for r in rows
        ]
    )


@router.delete(
    "/signing-secrets/{secret_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Revoke a push signing secret",
    description="Pushes signed with it are refused from now on; when no secret is left, "
    "pushes need no signature.",
    responses=problem_responses(*AUTH),
)
def revoke_signing_secret(secret_id: uuid.UUID, ctx: WriteSchool, session: SessionDep) -> Response:
    signing.revoke(
        session=session, school_id=ctx.school.id, secret_id=secret_id, actor=ctx.principal.actor
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/readiness",
    summary="Readiness for activation (R1)",
    description="From the latest valid snapshot: students without any guardian and guardians "
    "without an e-mail address, with counts, keys and names. Activation (R2) is refused until "
    "both lists are empty.",
    responses=problem_responses(*AUTH),
    name="get_activation_readiness",
)
def get_readiness(ctx: WriteSchool, session: SessionDep) -> ReadinessPublic:
    result = activation.readiness(session=session, school_id=ctx.school.id)
    snapshot = result.snapshot
    return ReadinessPublic(
        ready=result.ready,
        snapshot_id=snapshot.id if snapshot else None,
        received_at=snapshot.received_at if snapshot else None,
        school_year=snapshot.school_year if snapshot else None,
        students_without_guardian=GapList(
            count=len(result.students_without_guardian),
            items=[Gap(key=g.key, name=g.name) for g in result.students_without_guardian],
        ),
        guardians_without_email=GapList(
            count=len(result.guardians_without_email),
            items=[Gap(key=g.key, name=g.name) for g in result.guardians_without_email],
        ),
    )


@router.post(
    "/activation",
    status_code=status.HTTP_201_CREATED,
    summary="Activate the coupling (R2)",
    description="Applies the latest valid snapshot as the initial load and switches the "
    "coupling on. Refused with 409 and the readiness gaps (R1) until ready. Records already "
    "here from EDEXml or local creation are matched by LAS key, else a student by name and "
    "birth date and a guardian or staff member by e-mail, and not duplicated; the run's "
    "`report` lists matched, created and unmatched records.",
    responses=problem_responses(*AUTH, Conflict),
    name="activate_coupling",
)
async def activate(request: Request, ctx: WriteSchool) -> SyncRunPublic:
    run = await run_in_threadpool(
        activation.activate,
        sessions=request.app.state.sessionmaker,
        school_id=ctx.school.id,
        actor=ctx.principal.actor,
    )
    return SyncRunPublic.model_validate(run)


@router.delete(
    "/activation",
    summary="Deactivate the coupling",
    description="Stops the merge: later snapshots are stored, not applied. The data stays.",
    responses=problem_responses(*AUTH),
    name="deactivate_coupling",
)
def deactivate(ctx: WriteSchool, session: SessionDep) -> SchoolPublic:
    school = activation.deactivate(
        session=session, school_id=ctx.school.id, actor=ctx.principal.actor
    )
    return SchoolPublic.of(school)


edexml_router = APIRouter(prefix="/api/v1/schools/{school}", tags=["edexml"])


@edexml_router.post(
    "/imports/edexml",
    status_code=status.HTTP_201_CREATED,
    summary="Import an EDEXml file (before activation)",
    description="For schools that run on EDEXml files before the ESIS coupling is active. "
    "New records get source `edexml`; a later file updates EDEXml-sourced records except the "
    "fields edited locally (R5); records absent from the file are listed in the run's "
    "`report.absent` and soft-deleted only with `remove_missing=true`. At activation (R2) "
    "these records are matched to ESIS's by LAS key. After activation ESIS leads (R4): 409. "
    "A bad or hostile file is a 4xx problem and nothing is stored.",
    openapi_extra={"requestBody": EDEXML_BODY},
    responses=problem_responses(
        *AUTH, Conflict, PayloadTooLarge, UnsupportedMediaType, Unprocessable
    ),
)
async def import_edexml(
    request: Request,
    ctx: WriteSchool,
    remove_missing: Annotated[
        bool, Query(description="Soft-delete EDEXml records that the file no longer lists.")
    ] = False,
) -> SyncRunPublic:
    if media_type(request.headers.get("content-type")) not in XML_TYPES:
        raise UnsupportedMediaType("send the EDEXml file as application/xml")
    body = await request.body()
    run = await run_in_threadpool(
        imports.import_edexml,
        sessions=request.app.state.sessionmaker,
        school_id=ctx.school.id,
        body=body,
        remove_missing=remove_missing,
        actor=ctx.principal.actor,
    )
    return SyncRunPublic.model_validate(run)


def _connection_public(row: EsisConnection) -> ConnectionPublic:
    return ConnectionPublic(
        url=row.url,
        klantcode=row.klantcode,
        klantnaam=row.klantnaam,
        certificate=CertificateInfo(subject=row.cert_subject, not_after=row.cert_not_after),
        autorisatiesleutel_set=bool(row.secret_encrypted),
        ca_pem_set=row.ca_pem is not None,
        updated_at=row.updated_at,
        last_pulled_on=row.last_pulled_on,
    )


@router.put(
    "/connection",
    summary="Set the ESIS web service connection",
    description="Where and how to fetch the school from ESIS's UWLR 2.2 service (R3): the "
    "address, the client certificate (PKCS#12 with its password, or a PEM pair), the "
    "autorisatiesleutel, klantcode and klantnaam. Secrets are encrypted at rest and never "
    "read back; a certificate that does not parse or has expired is refused (422).",
    responses=problem_responses(*AUTH, Unprocessable),
    name="set_esis_connection",
)
def put_connection(
    data: ConnectionPut, request: Request, ctx: WriteSchool, session: SessionDep
) -> ConnectionPublic:
    row = pulls.put_connection(
        session=session,
        settings=request.app.state.settings,
        school_id=ctx.school.id,
        data=data,
        actor=ctx.principal.actor,
    )
    return _connection_public(row)


@router.get(
    "/connection",
    summary="Get the ESIS web service connection",
    description="The address, klantcode, klantnaam, the certificate's subject and expiry, and "
    "whether the secrets are set; never the secrets themselves.",
    responses=problem_responses(*AUTH),
    name="get_esis_connection",
)
def get_connection(request: Request, ctx: WriteSchool, session: SessionDep) -> ConnectionPublic:
    row = pulls.get_connection(session=session, school_id=ctx.school.id)
    shown = _connection_public(row)
    shown.health = health.health_public(
        session=session, settings=request.app.state.settings, connection=row
    )
    return shown


@router.post(
    "/pulls",
    status_code=status.HTTP_201_CREATED,
    summary="Fetch from ESIS now",
    description="Fetches the school from ESIS's UWLR service now and applies it exactly like a "
    "pushed snapshot (R3-R6; before activation it is stored for R1/R2). A SOAP Fault, an HTTP "
    "error, a timeout or a truncated answer (after retries for the transient ones) gives a "
    "`failed` run with the reason, and the school stays as it was: a failed fetch is never an "
    "empty school.",
    responses=problem_responses(*AUTH, Conflict, Unprocessable),
    name="pull_from_esis",
)
async def pull_now(request: Request, ctx: WriteSchool) -> SyncRunPublic:
    settings = request.app.state.settings
    options = pulls.PullOptions(
        limits=PushLimits(
            max_records=settings.max_snapshot_records, per_minute=settings.push_rate_per_minute
        ),
        attempts=settings.pull_attempts,
    )
    run = await run_in_threadpool(
        pulls.pull,
        sessions=request.app.state.sessionmaker,
        settings=settings,
        school_id=ctx.school.id,
        actor=ctx.principal.actor,
        options=options,
    )
    return SyncRunPublic.model_validate(run)


@edexml_router.get(
    "/exports/edexml",
    summary="Export the school as EDEXml 2.1",
    description="The school's current live data (no deleted or purged records, active staff) "
    "as EDEXml 2.1 with this project's guardian block, valid against the shipped XSDs, for "
    "other software in Dutch schools. Records without an LAS key get stable generated keys. "
    "409 when the school has no students (EDEXml needs at least one).",
    response_class=Response,
    responses={
        200: {
            "content": {"application/xml": {"schema": XML_BINARY}},
            "description": "An EDEXml 2.1 document",
            "headers": {
                "Content-Disposition": {
                    "description": '`attachment; filename="<school>-edexml.xml"`',
                    "schema": {"type": "string", "maxLength": 100, "pattern": "^attachment; "},
                }
            },
        },
        **problem_responses(*AUTH, Conflict),
    },
)
def export_edexml(ctx: WriteSchool, session: SessionDep) -> Response:
    body = export.export_edexml(session=session, school_id=ctx.school.id)
    return Response(
        body,
        media_type="application/xml",
        headers={"Content-Disposition": f'attachment; filename="{ctx.school.key}-edexml.xml"'},
    )


@edexml_router.post(
    "/imports/contacts",
    summary="Import a guardian contact file (CSV)",
    description="A CSV of guardians per student as a school exports it from a spreadsheet "
    "(docs/integrator.md lists the columns). Only for schools whose ESIS sends no guardians "
    "(otherwise 409: ESIS leads for guardians). Before activation the file is kept: its "
    "guardians count for readiness (R1) and are matched at activation (R2). After activation "
    "it adds or corrects guardians at once, as edits by the uploading admin (source "
    "`contacts`). A bad file is a 422 listing every problem with its line and column, and "
    "nothing is applied. `dry_run=true` shows what the file would do and writes nothing.",
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "A CSV file: `;` or `,`, UTF-8 (with or without BOM) or Windows-1252.",
            "content": {
                "text/csv": {"schema": {"type": "string", "format": "binary", "maxLength": 2097152}}
            },
        }
    },
    responses=problem_responses(
        *AUTH, Conflict, PayloadTooLarge, UnsupportedMediaType, Unprocessable
    ),
)
async def import_contacts(
    request: Request,
    ctx: WriteSchool,
    dry_run: Annotated[bool, Query(description="Show what it would do; write nothing.")] = False,
) -> ContactImportPublic:
    if media_type(request.headers.get("content-type")) not in ("text/csv", "application/csv"):
        raise UnsupportedMediaType("send the contact file as text/csv")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > contacts_csv.MAX_BYTES:
            limit = contacts_csv.MAX_BYTES
            raise PayloadTooLarge(f"a contact file may hold at most {limit} bytes")
    result = await run_in_threadpool(
        contacts.import_contacts,
        sessions=request.app.state.sessionmaker,
        school_id=ctx.school.id,
        body=bytes(body),
        dry_run=dry_run,
        actor=ctx.principal.actor,
    )
    return ContactImportPublic.model_validate(result)
