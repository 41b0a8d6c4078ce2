"""The worker: the daily schedule (R3) and recovery of interrupted snapshots.

`esis-sync worker` runs it; on the embedded SQLite default `esis-sync serve` runs it in a
thread beside the API. Any number of workers can run against one PostgreSQL: each school's
daily pull is leased with one conditional UPDATE (app/coupling/pulls.py), so a school is pulled by
one worker at a time, and the pull of a worker that dies is picked up when its lease ends.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from contextlib import nullcontext

from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.coupling.health import check_certificates
from app.coupling.pulls import PullOptions, run_due
from app.coupling.receive import PushLimits, recover_interrupted
from app.db import make_engine, make_sessionmaker
from app.webhooks.delivery import deliver_pending

log = logging.getLogger("esis_sync.worker")


# One per process: the pulls that run at once in a worker's threads take turns for the CPU
# (PullOptions.gate).
_TURNS = threading.Lock()


def options(settings: Settings) -> PullOptions:
    """A pull's options. The turns only on PostgreSQL: on SQLite a school's lock is the whole
    database's (one writer), so a pull holding it while waiting for its turn and a pull in its
    turn waiting for the database would wait for each other; and the in-process worker pulls
    one school at a time anyway."""
    sqlite = settings.database_url.startswith("sqlite")
    return PullOptions(
        gate=nullcontext() if sqlite else _TURNS,
        limits=PushLimits(
            max_records=settings.max_snapshot_records, per_minute=settings.push_rate_per_minute
        ),
        attempts=settings.pull_attempts,
    )


def run(settings: Settings, *, stop: threading.Event, once: bool = False) -> int:
    """Loop until `stop` is set (or one pass with `once`); returns the number of pulls."""
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    pulled = 0
    if not once:
        # Webhooks on their own, shorter interval: a change reaches receivers in seconds.
        threading.Thread(
            target=run_webhooks,
            args=(settings,),
            kwargs={"stop": stop},
            name="esis-sync-webhooks",
            daemon=True,
        ).start()
    try:
        while True:
            try:
                recover_interrupted(sessions=sessions, today=dt.datetime.now(settings.tz).date())
                check_certificates(sessions=sessions)
                runs = run_due(sessions=sessions, settings=settings, options=options(settings))
                pulled += len(runs)
                if runs:
                    log.info("scheduled pulls done", extra={"pulls": len(runs)})
            except Exception as exc:  # a worker survives a bad pass; the lease retries it
                log.error("scheduler pass failed", extra={"error_type": type(exc).__name__})
            if once:
                run_webhooks(settings, stop=stop, once=True, sessions=sessions)
                return pulled
            if stop.wait(settings.scheduler_interval_seconds):
                return pulled
    finally:
        engine.dispose()


def run_webhooks(
    settings: Settings,
    *,
    stop: threading.Event,
    once: bool = False,
    sessions: sessionmaker[Session] | None = None,
) -> int:
    """Deliver change-feed events to webhook endpoints until `stop`; returns events sent."""
    engine = None
    if sessions is None:
        engine = make_engine(settings.database_url)
        sessions = make_sessionmaker(engine)
    sent = 0
    try:
        while True:
            try:
                sent += deliver_pending(sessions=sessions, settings=settings)
            except Exception as exc:  # a bad pass is retried on the next one
                log.error("webhook pass failed", extra={"error_type": type(exc).__name__})
            if once or stop.wait(settings.webhook_interval_seconds):
                return sent
    finally:
        if engine is not None:
            engine.dispose()


def start_in_thread(settings: Settings) -> threading.Event:
    stop = threading.Event()
    thread = threading.Thread(
        target=run, args=(settings,), kwargs={"stop": stop}, name="esis-sync-worker", daemon=True
    )
    thread.start()
    return stop
