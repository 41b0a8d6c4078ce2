"""Pulling from ESIS's UWLR web service (R3): the connection, one pull, and the daily schedule.

A pulled snapshot takes the same path as a pushed one (`coupling.receive.receive_snapshot`, origin
`pull`). A failed fetch (a SOAP Fault, an HTTP error, a timeout, a truncated answer) is a failed
run with the reason, never an empty school.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import logging
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.coupling import health, repository
from app.coupling.models import EsisConnection
from app.coupling.receive import PushLimits, receive_snapshot, record_failure, record_outcome
from app.coupling.schemas import ConnectionPut
from app.crypto import decrypt, encrypt
from app.db import utcnow, write_transaction
from app.errors import ClientError, DomainError, NotFound, Unprocessable
from app.esis.certs import ClientIdentity, load_client_identity
from app.esis.parsing import UWLR_TYPE, Parsed
from app.esis.uwlr_normalise import stored_type, without_eckid
from app.esis.uwlr_soap import UwlrConnection, UwlrError
from app.events.service import Change, emit
from app.schools.models import School
from app.sync.models import RunKind, RunStatus, SyncRun

if TYPE_CHECKING:
    from app.esis.uwlr import Answer

log = logging.getLogger("esis_sync.pull")

LEASE = dt.timedelta(minutes=15)

Fetcher = Callable[..., "Answer"]


def fetch_answer(**kwargs: Any) -> Answer:
    """`app.esis.uwlr.fetch_answer`, imported when a pull runs: the client (httpx, the TLS
    transport, cryptography; ~10 MB) is not in a serving process that never pulls."""
    from app.esis import uwlr

    return uwlr.fetch_answer(**kwargs)


class EsisUnavailable(DomainError):
    status, slug, title = 502, "esis-unavailable", "ESIS could not be fetched"


class EsisNoData(DomainError):
    status, slug, title = 502, "esis-no-data", "ESIS has no data for this school"


# --- the connection -------------------------------------------------------------------------


def _identity(data: ConnectionPut) -> ClientIdentity | None:
    cert = data.certificate
    if cert is None:
        return None
    try:
        pkcs12 = base64.b64decode(cert.pkcs12_base64, validate=True) if cert.pkcs12_base64 else None
    except (binascii.Error, ValueError):
        raise Unprocessable("certificate.pkcs12_base64: not base64") from None
    return load_client_identity(
        pkcs12=pkcs12,
        password=cert.password,
        cert_pem=cert.cert_pem.encode() if cert.cert_pem else None,
        key_pem=cert.key_pem.encode() if cert.key_pem else None,
    )


def put_connection(
    *, session: Session, settings: Settings, school_id: uuid.UUID, data: ConnectionPut, actor: str
) -> EsisConnection:
    """Create or replace the school's connection; the certificate is checked on upload."""
    identity = _identity(data)
    row = repository.connection_of(session=session, school_id=school_id)
    if row is None and (identity is None or data.autorisatiesleutel is None):
        raise Unprocessable(
            "a new connection needs the client certificate and the autorisatiesleutel",
            errors=[{"field": "certificate", "message": "required on the first PUT"}],
        )
    now = utcnow()
    if row is None:
        assert identity is not None and data.autorisatiesleutel is not None
        row = EsisConnection(
            school_id=school_id,
            url=data.url,
            klantcode=data.klantcode,
            klantnaam=data.klantnaam,
            updated_by=actor,
            cert_subject=identity.subject,
            cert_not_after=identity.not_after,
            identity_encrypted=b"",
            secret_encrypted=b"",
        )
        session.add(row)
    row.url, row.klantcode, row.klantnaam = data.url, data.klantcode, data.klantnaam
    row.ca_pem = data.ca_pem
    if identity is not None:
        row.identity_encrypted = encrypt(
            settings,
            json.dumps(
                {"cert": identity.cert_pem.decode(), "key": identity.key_pem.decode()}
            ).encode(),
        )
        row.cert_subject, row.cert_not_after = identity.subject, identity.not_after
    if data.autorisatiesleutel is not None:
        row.secret_encrypted = encrypt(
            settings, json.dumps({"autorisatiesleutel": data.autorisatiesleutel}).encode()
        )
    row.updated_at, row.updated_by = now, actor
    session.flush()
    emit(
        session=session,
        school_id=school_id,
        source="api",
        actor=actor,
        changes=[
            Change(
                "esis_connection",
                row.id,
                "updated",
                {
                    "url": {"before": None, "after": data.url},
                    "certificate_replaced": identity is not None,
                },
            )
        ],
    )
    return row


def get_connection(*, session: Session, school_id: uuid.UUID) -> EsisConnection:
    row = repository.connection_of(session=session, school_id=school_id)
    if row is None:
        raise NotFound("this school has no ESIS connection: PUT one first")
    return row


def _uwlr_connection(settings: Settings, row: EsisConnection) -> UwlrConnection:
    identity = json.loads(decrypt(settings, row.identity_encrypted))
    secret = json.loads(decrypt(settings, row.secret_encrypted))
    return UwlrConnection(
        url=row.url,
        identity=ClientIdentity(
            cert_pem=identity["cert"].encode(),
            key_pem=identity["key"].encode(),
            not_after=row.cert_not_after,
            subject=row.cert_subject,
        ),
        ca_pem=row.ca_pem.encode() if row.ca_pem else None,
        autorisatiesleutel=secret["autorisatiesleutel"],
        klantcode=row.klantcode,
        klantnaam=row.klantnaam,
        allow_private=settings.allow_private_esis_hosts,
    )


# --- one pull -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PullOptions:
    limits: PushLimits
    attempts: int = 4
    backoff: float = 1.0
    fetcher: Fetcher = fetch_answer
    # Taken around the CPU-heavy parts of a pull: reading ESIS's answer, the two
    # transactions of the merge once the school's lock is held, and the health note; the wait
    # for ESIS and for the school's lock are outside it. A worker passes one lock for all its
    # threads, so that its pulls running at once take turns there (docs/operator.md,
    # "Workers"): threads contending for the GIL, which lxml and the database driver give up
    # and take back many times a pull, spent about half as much CPU again per pull.
    gate: AbstractContextManager[Any] = field(default_factory=nullcontext)


def pull(
    *,
    sessions: sessionmaker[Session],
    settings: Settings,
    school_id: uuid.UUID,
    actor: str,
    options: PullOptions,
    finish_on: dt.date | None = None,
) -> SyncRun:
    """Fetch the school from ESIS now and merge it like a push; a failure is a failed run.

    `finish_on`: the scheduler's day whose lease this pull holds; it ends (`finish`) in the
    transaction of the health note, once the pull returns. A pull that raises leaves it."""

    def note(run: SyncRun) -> None:
        def end_lease(session: Session) -> None:
            assert finish_on is not None
            repository.finish_pull(session=session, school_id=school_id, today=finish_on)

        also = None if finish_on is None else end_lease
        health.note_pull(sessions=sessions, settings=settings, run=run, also=also)

    with sessions() as session:
        school = session.get_one(School, school_id)
        conn = _uwlr_connection(settings, get_connection(session=session, school_id=school_id))
        brin, branch = school.brin, school.branch
    today = dt.datetime.now(settings.tz).date()
    started = utcnow()
    try:
        answer = options.fetcher(
            conn=conn,
            brin=brin,
            branch=branch,
            attempts=options.attempts,
            backoff=options.backoff,
            gate=options.gate,
        )
    except UwlrError as exc:
        run = SyncRun(
            school_id=school_id,
            kind=RunKind.MERGE.value,
            origin="pull",
            actor=actor,
            started_at=started,
        )
        if exc.kind == "no_changes":
            # geenwijzigingen: a run of its own, nothing to apply, nothing to try again.
            record_outcome(
                sessions=sessions,
                run=run,
                status=RunStatus.NO_CHANGES,
                warnings=["ESIS answered geenwijzigingen: nothing changed since the last pull"],
            )
            note(run)
            return run
        log.warning(
            "pull failed",
            extra={"school_id": str(school_id), "kind": exc.kind, "attempts": exc.attempts},
        )
        if exc.kind == "no_data":
            # geengegevens is never an empty school: a problem for an admin to look at.
            record_failure(
                sessions=sessions,
                run=run,
                exc=EsisNoData(f"{exc} (nothing was changed)", kind=exc.kind, transient=False),
            )
            note(run)
            return run
        error = EsisUnavailable(
            f"{exc} (nothing was changed)",
            kind=exc.kind,
            attempts=exc.attempts,
            transient=exc.transient,
        )
        record_failure(sessions=sessions, run=run, exc=error)
        note(run)
        return run
    received = receive_snapshot(
        sessions=sessions,
        school_id=school_id,
        body=without_eckid(answer.body),
        content_type=stored_type(UWLR_TYPE, brin, branch),
        idempotency_key=None,
        origin="pull",
        actor=actor,
        today=today,
        limits=options.limits,
        # Read once, not twice.
        parsed=Parsed(answer.read.snapshot, list(answer.read.warnings), list(answer.read.kept)),
        turns=options.gate,
    )
    with options.gate:
        note(received.run)
    return received.run


# --- the daily schedule ---------------------------------------------------------------------


def due(*, session: Session, now: dt.datetime, tz: Any) -> list[uuid.UUID]:
    """Active schools whose daily sync time (school-local, R3) has passed today and that were
    not pulled yet today, nor are leased by a worker right now."""
    local = now.astimezone(tz)
    rows = repository.pull_candidates(session=session, now=now)
    return [
        school_id
        for school_id, at, last in rows
        if local.time() >= at and (last is None or last < local.date())
    ]


def claim(
    *, sessions: sessionmaker[Session], school_id: uuid.UUID, now: dt.datetime, today: dt.date
) -> bool:
    """Lease the school's daily pull: one conditional UPDATE, so only one worker wins."""
    with write_transaction(sessions) as session:
        won = repository.claim_pull(
            session=session, school_id=school_id, now=now, until=now + LEASE, today=today
        )
    return bool(won)


def claim_all(
    *,
    sessions: sessionmaker[Session],
    school_ids: list[uuid.UUID],
    now: dt.datetime,
    today: dt.date,
) -> list[uuid.UUID]:
    """`claim` for the tick's schools at once (500 to a statement, in one transaction: 6,000
    schools took 6,000 transactions); the ones won, in the order given."""
    with write_transaction(sessions) as session:
        won = repository.claim_pulls(
            session=session, school_ids=school_ids, now=now, until=now + LEASE, today=today
        )
    return [s for s in school_ids if s in won]


def finish(*, sessions: sessionmaker[Session], school_id: uuid.UUID, today: dt.date) -> None:
    with write_transaction(sessions) as session:
        repository.finish_pull(session=session, school_id=school_id, today=today)


def run_due(
    *,
    sessions: sessionmaker[Session],
    settings: Settings,
    options: PullOptions,
    now: dt.datetime | None = None,
) -> list[SyncRun]:
    """One pass of the scheduler: pull every due school this worker can lease."""
    now = now or utcnow()
    today = now.astimezone(settings.tz).date()
    with sessions() as session:
        schools = due(session=session, now=now, tz=settings.tz)
        waiting = health.backed_off(session=session, settings=settings, school_ids=schools, now=now)
    schools = [s for s in schools if s not in waiting]  # quarantined: backing off
    runs: list[SyncRun] = []
    for school_id in schools:
        if not claim(sessions=sessions, school_id=school_id, now=now, today=today):
            continue  # another worker has it
        try:
            runs.append(
                pull(
                    sessions=sessions,
                    settings=settings,
                    school_id=school_id,
                    actor="schedule",
                    options=options,
                    finish_on=today,  # the lease ends with the health note
                )
            )
        except ClientError as exc:  # recorded on the run; the day's pull is done
            log.warning(
                "scheduled pull refused", extra={"school_id": str(school_id), "status": exc.status}
            )
            finish(sessions=sessions, school_id=school_id, today=today)
        # Anything else leaves the lease to run out, so that a worker tries again later.
    return runs
