"""A provenance source of its own for guardian contact files (`contacts`); a run status for
an ESIS answer that says nothing changed (`no_changes`)

Revision ID: c3d9a1e5f7b2
Revises: b7e1c0a2f3d4
Create Date: 2026-12-01 10:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "c3d9a1e5f7b2"
down_revision: str | None = "b7e1c0a2f3d4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = (
    "school_group",
    "student",
    "guardian",
    "staff",
    "student_group",
    "student_guardian",
    "staff_group",
)
BEFORE = "source IN ('esis', 'edexml', 'local')"
AFTER = "source IN ('esis', 'edexml', 'local', 'contacts')"


STATUS_BEFORE = "status IN ('received', 'stored', 'applied', 'failed', 'held')"
STATUS_AFTER = "status IN ('received', 'stored', 'applied', 'failed', 'held', 'no_changes')"


def _status(condition: str) -> None:
    with op.batch_alter_table("sync_run") as batch:
        batch.drop_constraint(op.f("ck_sync_run_status"), type_="check")
        batch.create_check_constraint(op.f("ck_sync_run_status"), condition)


def _replace(condition: str) -> None:
    for table in TABLES:
        # Batch mode: SQLite cannot alter a CHECK constraint in place (the table is rebuilt).
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(op.f(f"ck_{table}_source"), type_="check")
            batch.create_check_constraint(op.f(f"ck_{table}_source"), condition)


def upgrade() -> None:
    _replace(AFTER)
    _status(STATUS_AFTER)


def downgrade() -> None:
    _status(STATUS_BEFORE)
    _replace(BEFORE)
