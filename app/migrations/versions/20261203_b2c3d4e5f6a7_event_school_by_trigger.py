"""The event table loses its foreign key to the school; a trigger on the school deletes a
school's events with it, as the key's ON DELETE CASCADE did (issue 18).

The key's check was the costliest part of writing events: PostgreSQL checks a foreign key
row by row (a query and a lock of the school's row for each of the 7,000 events of a
1,000-student school's initial load, about 40 ms of its events' 90). It proved nothing the
writer does not prove already: every event is numbered from its school's row
(`app.events.repository.take_event_numbers`, an UPDATE of that row in the same transaction,
which fails when there is no such school and holds the row's lock until the commit, so the
school cannot be deleted before the events are in). `tests/test_event_school.py` holds both
halves: no event for a school that does not exist, and none left when a school is deleted
(or, on PostgreSQL, truncated). The triggers are `app/migrations/school_triggers.py`'s: a
later migration that rebuilds `school` on SQLite creates them again.

Revision ID: b2c3d4e5f6a7
Revises: a9c4e7b1d2f3
Create Date: 2026-12-03 09:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

from app.migrations import school_triggers

revision: str = "b2c3d4e5f6a7"
down_revision: str | None = "a9c4e7b1d2f3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # PostgreSQL drops the constraint in place; SQLite rebuilds the table in batch mode (the
    # migrations run with its foreign keys off, and nothing refers to events).
    with op.batch_alter_table("event") as batch:
        batch.drop_constraint("fk_event_school_id_school", type_="foreignkey")
    school_triggers.create()


def downgrade() -> None:
    school_triggers.drop()
    # Events of schools that no longer exist (none, while the trigger was there) would
    # refuse the key: they go first.
    op.execute("DELETE FROM event WHERE school_id NOT IN (SELECT id FROM school)")
    with op.batch_alter_table("event") as batch:
        batch.create_foreign_key(
            "fk_event_school_id_school", "school", ["school_id"], ["id"], ondelete="CASCADE"
        )
