"""The triggers that keep `esis_digest` honest (app/sync/digests.py), for migrations.

An UPDATE of a group or person that changes a field ESIS sends (or the values ESIS sent)
without bumping `version`, and without setting the digest itself, clears the digest: the
next merge then compares the record field by field. The merge and every write path of the
service bump `version` or set the digest; the triggers are for what does not (an operator's
UPDATE by hand, a future code path that forgets).

On SQLite a table rebuilt by `op.batch_alter_table` (a changed constraint, a changed column)
loses its triggers: a migration that rebuilds one of these tables calls `create` again for
it afterwards, with the fields ESIS sends at that revision (tests/test_merge_properties.py
checks the installed triggers against the merge's specs).
"""

from __future__ import annotations

from alembic import op

JSON_COLUMNS = frozenset({"roles", "esis_values"})  # PostgreSQL's json has no equality


def _name(table: str) -> str:
    return f"{table}_esis_digest_stale"


def _when(fields: tuple[str, ...], dialect: str) -> str:
    watched = (*fields, "esis_values")
    if dialect == "postgresql":
        parts = [
            f"NEW.{f}::text IS DISTINCT FROM OLD.{f}::text"
            if f in JSON_COLUMNS
            else f"NEW.{f} IS DISTINCT FROM OLD.{f}"
            for f in watched
        ]
        same = "IS NOT DISTINCT FROM"
    else:
        parts = [f"NEW.{f} IS NOT OLD.{f}" for f in watched]
        same = "IS"
    return (
        f"NEW.version = OLD.version AND NEW.esis_digest IS NOT NULL "
        f"AND NEW.esis_digest {same} OLD.esis_digest AND ({' OR '.join(parts)})"
    )


def create_function() -> None:
    """PostgreSQL: the trigger function (once, before the first `create`)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE OR REPLACE FUNCTION esis_digest_stale() RETURNS trigger LANGUAGE plpgsql "
            "AS $$ BEGIN NEW.esis_digest := NULL; RETURN NEW; END $$"
        )


def create(table: str, fields: tuple[str, ...]) -> None:
    """(Re)creates the trigger of `table`, watching `fields` and the values ESIS sent."""
    dialect = op.get_bind().dialect.name
    drop(table)
    when = _when(fields, dialect)
    if dialect == "postgresql":
        op.execute(
            f"CREATE TRIGGER {_name(table)} BEFORE UPDATE ON {table} "
            f"FOR EACH ROW WHEN ({when}) EXECUTE FUNCTION esis_digest_stale()"
        )
    else:
        # AFTER, and an UPDATE of the row: SQLite's triggers cannot assign to NEW. It does
        # not fire itself again (recursive triggers are off, and the digest is NULL then).
        op.execute(
            f"CREATE TRIGGER {_name(table)} AFTER UPDATE ON {table} "  # noqa: S608 (our names)
            f"FOR EACH ROW WHEN {when} BEGIN "
            f"UPDATE {table} SET esis_digest = NULL "
            f"WHERE school_id = NEW.school_id AND id = NEW.id; END"
        )


def drop(table: str) -> None:
    on = f" ON {table}" if op.get_bind().dialect.name == "postgresql" else ""
    op.execute(f"DROP TRIGGER IF EXISTS {_name(table)}{on}")


def drop_function() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS esis_digest_stale()")
