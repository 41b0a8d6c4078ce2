"""The trigger that deletes a school's events with the school (migration b2c3d4e5f6a7), for
migrations: the events have no foreign key to the school (docs/data-model.md).

On SQLite a table rebuilt by `op.batch_alter_table` loses its triggers: a later migration
that rebuilds `school` calls `create` again afterwards (`tests/test_event_school.py` deletes
a school at the head revision and finds its events gone). On PostgreSQL a `TRUNCATE school`
fires no DELETE trigger, so a statement trigger on TRUNCATE deletes the events of schools
that are gone (what the key's CASCADE did for a `TRUNCATE school CASCADE`).
"""

from __future__ import annotations

from alembic import op

NAME = "school_events_deleted"
TRUNCATED = "school_events_truncated"


def create() -> None:
    drop()
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"CREATE OR REPLACE FUNCTION {NAME}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "  # noqa: S608
            "IF TG_OP = 'TRUNCATE' THEN "
            "DELETE FROM event WHERE school_id NOT IN (SELECT id FROM school); "
            "ELSE DELETE FROM event WHERE school_id = OLD.id; END IF; "
            "RETURN NULL; END $$"
        )
        op.execute(
            f"CREATE TRIGGER {NAME} AFTER DELETE ON school FOR EACH ROW EXECUTE FUNCTION {NAME}()"
        )
        op.execute(
            f"CREATE TRIGGER {TRUNCATED} AFTER TRUNCATE ON school "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {NAME}()"
        )
    else:
        op.execute(
            f"CREATE TRIGGER {NAME} AFTER DELETE ON school FOR EACH ROW "  # noqa: S608 (ours)
            "BEGIN DELETE FROM event WHERE school_id = OLD.id; END"
        )


def drop() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {TRUNCATED} ON school")
        op.execute(f"DROP TRIGGER IF EXISTS {NAME} ON school")
        op.execute(f"DROP FUNCTION IF EXISTS {NAME}()")
    else:
        op.execute(f"DROP TRIGGER IF EXISTS {NAME}")
