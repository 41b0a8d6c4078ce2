"""An index on the job queue's open jobs by lock (PostgreSQL only), for the queue's fetch.

procrastinate's fetch of the next job (`procrastinate_fetch_job_v2`) checks, for a
candidate job, that no other open job holds its lock; procrastinate's own indexes answer
that only by reading the index of all open jobs (`lock` is the second column of
`procrastinate_jobs_id_lock_idx_v1`). With a daily tick's 6,000 pull jobs queued at once
and the planner's statistics still from before them, every fetch did that once per queued
job: 450 ms a fetch. With this index, 8 ms; with fresh statistics too (the tick analyses the
table after a large deferral, `app.jobs.analyze_queue`), 0.4 ms (bench/README.md, "Issue 18:
ninth round"; upstream: procrastinate issues 393 and 1242).

Built in the migrations' one transaction, not CONCURRENTLY (which cannot run inside one): it
holds off the queue's writes (new jobs, fetches, finishes) while it reads the table, kept
jobs included. Workers wait, they do not fail; run `esis-sync migrate` when a tick is not
queueing a day's pulls.

Revision ID: a9c4e7b1d2f3
Revises: f1e2d3c4b5a6
Create Date: 2026-12-02 17:30:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "a9c4e7b1d2f3"
down_revision: str | None = "f1e2d3c4b5a6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "esis_sync_jobs_open_by_lock"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"CREATE INDEX IF NOT EXISTS {INDEX} ON procrastinate_jobs (lock, id) "
        "WHERE status IN ('todo', 'doing')"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"DROP INDEX IF EXISTS {INDEX}")
