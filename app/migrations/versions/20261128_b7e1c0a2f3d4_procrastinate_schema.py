"""procrastinate's job queue schema (PostgreSQL only; SQLite runs jobs in-process)

Revision ID: b7e1c0a2f3d4
Revises: 05a584476d35
Create Date: 2026-11-28 16:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "b7e1c0a2f3d4"
down_revision: str | None = "05a584476d35"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    from app.jobs import apply_schema_sql

    # The raw driver connection: the schema's SQL has % and :: that SQLAlchemy would parse.
    raw = bind.connection.driver_connection
    assert raw is not None
    raw.execute(apply_schema_sql())


def downgrade() -> None:
    raise NotImplementedError("procrastinate's schema is not removed by a downgrade")
