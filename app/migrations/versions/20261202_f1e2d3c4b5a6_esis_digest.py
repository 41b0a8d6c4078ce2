"""A digest per record of the values ESIS last sent and of the record's version
(`esis_digest`, issue 18): an unchanged record is settled by one comparison, its fields not
read. NULL (the value every existing record starts with) only means the next merge reads the
record whole, and writes the digest.

The digest stays true because every write of a field ESIS sends bumps `version`. A write that
does not (an operator's UPDATE by hand, a future code path that forgets) is caught by a
trigger (app/migrations/digest_triggers.py): an UPDATE that changes such a field or the
values ESIS sent, leaves `version` and does not set the digest itself, clears it, so that
the next merge compares the record field by field.

Revision ID: f1e2d3c4b5a6
Revises: d5e8f1a2b3c4
Create Date: 2026-12-02 03:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

from app.migrations import digest_triggers

revision: str = "f1e2d3c4b5a6"
down_revision: str | None = "d5e8f1a2b3c4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The fields ESIS sends of each kind (app/sync/rules.py at this revision; a test compares).
FIELDS = {
    "school_group": ("name", "description", "year_level", "is_composite", "school_year"),
    "student": (
        "last_name",
        "name_prefix",
        "initials",
        "given_name",
        "first_names",
        "birth_date",
        "gender",
        "year_level",
        "email",
    ),
    "guardian": ("last_name", "name_prefix", "initials", "given_name", "email", "phone"),
    "staff": ("last_name", "name_prefix", "initials", "given_name", "email", "roles", "active"),
}


def upgrade() -> None:
    # A nullable column without a default: PostgreSQL changes only the catalog; SQLite adds
    # it in place (no table rebuild).
    for table in FIELDS:
        op.add_column(
            table,
            sa.Column("esis_digest", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        )
    digest_triggers.create_function()
    for table, fields in FIELDS.items():
        digest_triggers.create(table, fields)


def downgrade() -> None:
    for table in FIELDS:
        digest_triggers.drop(table)
    digest_triggers.drop_function()
    for table in FIELDS:
        # In place on both (SQLite 3.35+): a batch rebuild of a person table on SQLite would
        # drop it with its foreign keys on, and its links with it.
        op.execute(f"ALTER TABLE {table} DROP COLUMN esis_digest")
