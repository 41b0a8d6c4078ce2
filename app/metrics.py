"""Prometheus metrics at `/metrics`.

Per process: HTTP requests and latency by route, and merge durations. From the database, so
that every replica and worker reports the same: sync runs by outcome and origin, open drift,
failed pulls of the last day, the age of each school's last successful sync, and (PostgreSQL)
the job queue by task and status.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.db import metadata, utcnow

REGISTRY = CollectorRegistry()
REQUESTS = Counter(
    "esis_sync_http_requests_total",
    "HTTP requests",
    ["method", "route", "status"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "esis_sync_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
MERGE = Histogram(
    "esis_sync_merge_duration_seconds",
    "Time to apply one snapshot (one transaction)",
    ["kind"],
    registry=REGISTRY,
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)


def observe_merge(kind: str, seconds: float) -> None:
    MERGE.labels(kind=kind).observe(seconds)


class MetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope.get("method", "")
            REQUESTS.labels(method=method, route=route, status=str(status)).inc()
            LATENCY.labels(method=method, route=route).observe(time.perf_counter() - started)


def _from_database(session: Session, now: dt.datetime) -> list[Any]:
    runs_t = metadata.tables["sync_run"]
    drift_t = metadata.tables["drift_item"]
    school_t = metadata.tables["school"]
    runs = GaugeMetricFamily(
        "esis_sync_sync_runs",
        "Sync runs recorded, by origin, kind and status",
        labels=["origin", "kind", "status"],
    )
    for origin, kind, status, n in session.execute(
        select(runs_t.c.origin, runs_t.c.kind, runs_t.c.status, func.count()).group_by(
            runs_t.c.origin, runs_t.c.kind, runs_t.c.status
        )
    ):
        runs.add_metric([origin, kind, status], n)
    drift = GaugeMetricFamily("esis_sync_drift_open", "Open drift items (R5)")
    drift.add_metric([], session.scalar(select(func.count()).select_from(drift_t)) or 0)
    failed = GaugeMetricFamily(
        "esis_sync_pulls_failed_last_day", "Pulls from ESIS that failed in the last 24 hours"
    )
    failed.add_metric(
        [],
        session.scalar(
            select(func.count())
            .select_from(runs_t)
            .where(
                runs_t.c.origin == "pull",
                runs_t.c.status == "failed",
                runs_t.c.started_at > now - dt.timedelta(days=1),
            )
        )
        or 0,
    )
    age = GaugeMetricFamily(
        "esis_sync_last_successful_sync_age_seconds",
        "Seconds since the school's last applied snapshot",
        labels=["school"],
    )
    for key, last in session.execute(
        select(school_t.c.key, func.max(runs_t.c.finished_at))
        .join(runs_t, runs_t.c.school_id == school_t.c.id)
        .where(runs_t.c.status == "applied")
        .group_by(school_t.c.key)
    ):
        if last is not None:
            last = last if last.tzinfo else last.replace(tzinfo=dt.UTC)
            age.add_metric([key], (now - last).total_seconds())
    jobs = GaugeMetricFamily(
        "esis_sync_jobs",
        "Jobs in the queue by task and status (PostgreSQL workers)",
        labels=["task", "status"],
    )
    if session.get_bind().dialect.name == "postgresql":
        for task, status, n in session.execute(
            text(
                "SELECT task_name, status::text, count(*) FROM procrastinate_jobs "
                "GROUP BY task_name, status"
            )
        ):
            jobs.add_metric([task, status], n)
    certificates = GaugeMetricFamily(
        "esis_sync_client_certificate_expiry_seconds",
        "Seconds until the school's ESIS client certificate expires (negative: expired)",
        labels=["school"],
    )
    expiring = GaugeMetricFamily(
        "esis_sync_client_certificates_expiring",
        "ESIS client certificates that expire within 30, 7 and 1 days",
        labels=["within_days"],
    )
    within = dict.fromkeys((30, 7, 1), 0)
    connection_t = metadata.tables["esis_connection"]
    for key, not_after in session.execute(
        select(school_t.c.key, connection_t.c.cert_not_after).join(
            connection_t, connection_t.c.school_id == school_t.c.id
        )
    ):
        left = (not_after - now).total_seconds()
        certificates.add_metric([key], left)
        for days in within:
            within[days] += left <= days * 86400
    for days, n in within.items():
        expiring.add_metric([str(days)], n)
    return [runs, drift, failed, age, jobs, certificates, expiring]


router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    description="For a scraper: HTTP traffic, merge durations, sync runs by outcome, open "
    "drift, failed pulls and the age of each school's last successful sync. No personal data.",
    response_class=Response,
    responses={
        200: {
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "description": "Prometheus text format",
        }
    },
    name="get_metrics",
)
def metrics(request: Request) -> Response:
    with request.app.state.sessionmaker() as session:
        families = _from_database(session, utcnow())
    extra = CollectorRegistry()

    class _Snapshot:
        def collect(self) -> list[Any]:
            return families

    extra.register(_Snapshot())
    body = generate_latest(REGISTRY) + generate_latest(extra)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
