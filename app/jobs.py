"""Jobs on PostgreSQL, with procrastinate: the daily schedule and the pulls it starts.

- `tick` (periodic, every minute, one at a time across all workers) finds schools whose
  daily sync time has passed (school time, R3), leases each (app/coupling/pulls.py) and defers a
  `pull_school` job for it.
- `pull_school` runs with `lock=school:<id>`: jobs of one school never run at once, on any
  number of workers on any number of machines. A failure is retried (procrastinate's retry);
  the merge runs in one transaction, so an interrupted job leaves nothing half-applied.
- `retry_stalled` (periodic) puts back jobs of workers that stopped sending heartbeats (a
  killed worker): the pull runs again on another worker.

On the embedded SQLite default the same functions run in-process (app/worker.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import procrastinate

from app.config import Settings
from app.coupling.health import backed_off, check_certificates
from app.coupling.pulls import claim_all, due, pull
from app.coupling.receive import recover_interrupted
from app.db import make_engine, make_sessionmaker
from app.webhooks.delivery import deliver_pending

log = logging.getLogger("esis_sync.jobs")

QUEUE = "esis-sync"
DEFER_BATCH = 500  # pull jobs deferred by one statement
# After a tick queues this many pulls, the job table's statistics are refreshed at once: the
# planner's, from before them, took the queue for nearly empty and made every fetch of a job
# check each queued job (450 ms a fetch with 6,000 queued; 0.5 ms analysed, 0.4 ms with the
# index of open jobs by lock too). Autovacuum analyses the table only once 10 % of its rows
# changed: with 30 days of finished jobs kept (delete_old_jobs), a day's are about 3 %.
ANALYZE_AFTER = 200
# How long the tick's ANALYZE waits for the table's lock (an autovacuum may hold it).
ANALYZE_LOCK_TIMEOUT = "2s"


def conninfo(settings: Settings) -> str:
    return "postgresql://" + settings.database_url.split("://", 1)[1]


def cron(seconds: int) -> str:
    """Every `seconds` (croniter's sixth field is seconds), or every N minutes."""
    if seconds < 60:
        return f"* * * * * */{seconds}"
    return f"*/{max(1, seconds // 60)} * * * *"


def make_app(settings: Settings, *, analyze_after: int = ANALYZE_AFTER) -> procrastinate.App:
    """A procrastinate app whose tasks pull with `settings` (one per worker process).
    `analyze_after`: see ANALYZE_AFTER."""
    from app.worker import options

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo(settings)))
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)

    @app.task(
        name="pull_school",
        queue=QUEUE,
        retry=procrastinate.RetryStrategy(max_attempts=3, exponential_wait=10),
    )
    def pull_school(school_id: str) -> str:
        run = pull(
            sessions=sessions,
            settings=settings,
            school_id=uuid.UUID(school_id),
            actor="schedule",
            options=options(settings),
            # The day's lease ends in the transaction of the pull's health note.
            finish_on=dt.datetime.now(settings.tz).date(),
        )
        return run.status

    def _due_and_claimed(now: dt.datetime) -> list[uuid.UUID]:
        recover_interrupted(sessions=sessions, today=now.astimezone(settings.tz).date())
        check_certificates(sessions=sessions, now=now)
        with sessions() as session:
            candidates = due(session=session, now=now, tz=settings.tz)
            waiting = backed_off(session=session, settings=settings, school_ids=candidates, now=now)
        candidates = [s for s in candidates if s not in waiting]  # quarantined: backing off
        today = now.astimezone(settings.tz).date()
        return claim_all(sessions=sessions, school_ids=candidates, now=now, today=today)

    every = cron(settings.scheduler_interval_seconds)
    stalled_seconds = float(settings.job_stalled_seconds)

    @app.periodic(cron=every, periodic_id="tick")
    @app.task(name="tick", queue=QUEUE, queueing_lock="tick", pass_context=False)
    async def tick(timestamp: int) -> int:
        now = dt.datetime.fromtimestamp(timestamp, dt.UTC)
        schools = await asyncio.to_thread(_due_and_claimed, now)
        for start in range(0, len(schools), DEFER_BATCH):
            await defer_pulls(app, schools[start : start + DEFER_BATCH])
        if len(schools) >= analyze_after:
            try:
                await analyze_queue(app)
            except Exception as exc:  # the pulls are queued: only the fetches are slower
                log.warning("job queue not analysed", extra={"error_type": type(exc).__name__})
        if schools:
            log.info("daily pulls queued", extra={"pulls": len(schools)})
        return len(schools)

    @app.periodic(cron=every, periodic_id="retry_stalled")
    @app.task(name="retry_stalled", queue=QUEUE, queueing_lock="retry_stalled", pass_context=False)
    async def retry_stalled(timestamp: int) -> int:
        del timestamp
        return await retry_stalled_jobs(app, seconds=stalled_seconds)

    retention_hours = settings.job_retention_days * 24

    @app.periodic(cron="23 3 * * *", periodic_id="delete_old_jobs")
    @app.task(
        name="delete_old_jobs", queue=QUEUE, queueing_lock="delete_old_jobs", pass_context=False
    )
    async def delete_old_jobs(timestamp: int) -> None:
        """Once a day (03:23 UTC). The queue would keep every finished job and its events: a
        pull a school a day, and the periodic tasks' own jobs (about 6,000 a day more)."""
        del timestamp
        await app.job_manager.delete_old_jobs(
            nb_hours=retention_hours,
            queue=QUEUE,
            include_failed=True,
            include_cancelled=True,
            include_aborted=True,
        )

    @app.periodic(cron=cron(settings.webhook_interval_seconds), periodic_id="deliver_webhooks")
    @app.task(
        name="deliver_webhooks",
        queue=QUEUE,
        queueing_lock="deliver_webhooks",
        pass_context=False,
    )
    async def deliver_webhooks(timestamp: int) -> int:
        """Change-feed events to webhook endpoints; each endpoint is leased while it is sent to."""
        del timestamp
        return await asyncio.to_thread(deliver_pending, sessions=sessions, settings=settings)

    return app


def _pull_job(app: procrastinate.App, school: uuid.UUID) -> procrastinate.jobs.Job:
    return (
        app.tasks["pull_school"]
        .configure(lock=f"school:{school}", queueing_lock=f"pull:{school}")
        .make_new_job(school_id=str(school))
    )


async def defer_pulls(app: procrastinate.App, schools: list[uuid.UUID]) -> None:
    """Queue a `pull_school` job per school with one INSERT (procrastinate's
    `batch_defer_jobs_async`), not one per school: deferring one by one competed with the
    worker's own pulls and set the pace of a large tick (bench/README.md, pull scale). A
    school still queued from an earlier tick (a long queue) makes the batch fail as a whole:
    then each is deferred alone, and the one already queued is left as it is (once is
    enough)."""
    if not schools:
        return
    try:
        await app.job_manager.batch_defer_jobs_async([_pull_job(app, s) for s in schools])
    except procrastinate.exceptions.AlreadyEnqueued:
        for school in schools:
            with contextlib.suppress(procrastinate.exceptions.AlreadyEnqueued):
                await app.job_manager.defer_job_async(_pull_job(app, school))


async def analyze_queue(app: procrastinate.App) -> None:
    """Fresh planner statistics of the job table (ANALYZE reads a sample of at most 30,000
    of its rows). It waits at most ANALYZE_LOCK_TIMEOUT for the table (then raises): an
    autovacuum of it that will not yield would otherwise hold up the tick. A role that does
    not own the table gets PostgreSQL's warning, not an error: the fetches then rely on the
    index of open jobs by lock (8 ms a fetch with 6,000 queued) until autovacuum analyses it."""
    await app.connector.execute_query_async(
        f"SET LOCAL lock_timeout = '{ANALYZE_LOCK_TIMEOUT}'; ANALYZE procrastinate_jobs"
    )


async def retry_stalled_jobs(app: procrastinate.App, *, seconds: float) -> int:
    """Jobs of workers without a heartbeat for `seconds` go back to the queue."""
    stalled = list(await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=seconds))
    for job in stalled:
        await app.job_manager.retry_job(job)
    if stalled:
        log.warning("stalled jobs retried", extra={"jobs": len(stalled)})
    return len(stalled)


# Threads beside the pulls' own: the tick and the webhook delivery (`asyncio.to_thread`).
SPARE_THREADS = 2


def run_worker(settings: Settings, **worker: Any) -> None:
    """A procrastinate worker: blocks until stopped (SIGINT/SIGTERM).

    procrastinate runs a synchronous task (a pull) in the event loop's default thread pool,
    as `asyncio.to_thread` does the tick's and the webhooks' work. Python sizes that pool by
    the CPUs (6 threads on 2), not by the jobs: with ESIS_SYNC_WORKER_CONCURRENCY above it,
    jobs were fetched with no thread to run on, and the tick waited behind the pulls. So the
    pool is sized here, for every job at once and the tick and webhooks beside them."""
    app = make_app(settings)
    heartbeat = max(1.0, settings.job_stalled_seconds / 3)
    concurrency = settings.worker_concurrency

    async def main() -> None:
        threads = concurrency + SPARE_THREADS
        with ThreadPoolExecutor(threads, thread_name_prefix="esis-sync-job") as pool:
            asyncio.get_running_loop().set_default_executor(pool)
            async with app.open_async():
                await app.run_worker_async(
                    queues=[QUEUE],
                    concurrency=concurrency,
                    update_heartbeat_interval=heartbeat,
                    stalled_worker_timeout=settings.job_stalled_seconds,
                    **worker,
                )

    asyncio.run(main())


def apply_schema_sql() -> str:
    """procrastinate's own schema, applied by our migrations on PostgreSQL."""
    return procrastinate.schema.SchemaManager.get_schema()
