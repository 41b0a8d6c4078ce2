"""Name prefixes and initials of students, guardians and staff hold 100 characters, as the
snapshot schema (`ShortText`) and the guardian block's XSD (`VerzorgerTekst100Type`) allow:
at 50, a guardian's 60-character initials passed validation and then failed the insert on
PostgreSQL (a 500 for something a client sent).

Revision ID: a4b7c2d9e1f3
Revises: e362845437aa
Create Date: 2026-12-01 15:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "a4b7c2d9e1f3"
down_revision: str | None = "e362845437aa"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("student", "guardian", "staff")
COLUMNS = ("name_prefix", "initials")


def _resize(old: int, new: int) -> None:
    # On PostgreSQL a longer varchar changes only the catalog (no table rewrite); SQLite
    # rebuilds the table in batch mode (it does not enforce the length either way).
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            for column in COLUMNS:
                batch.alter_column(
                    column,
                    existing_type=sqlmodel.sql.sqltypes.AutoString(length=old),
                    type_=sqlmodel.sql.sqltypes.AutoString(length=new),
                    existing_nullable=True,
                )


def upgrade() -> None:
    _resize(50, 100)


def downgrade() -> None:
    # Values longer than 50 characters would not fit again: shortened to 50.
    for table in TABLES:
        for column in COLUMNS:
            op.execute(
                sa.text(
                    f"UPDATE {table} SET {column} = substr({column}, 1, 50) "  # noqa: S608
                    f"WHERE length({column}) > 50"
                )
            )
    _resize(100, 50)
