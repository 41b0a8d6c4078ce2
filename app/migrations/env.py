"""Alembic environment: the same migrations on SQLite and PostgreSQL."""

from __future__ import annotations

from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy import Connection

import app.console.models  # the console's table (app.models may not import it)
import app.models  # noqa: F401  (registers every table on the metadata)
from app.config import get_settings
from app.db import make_engine, metadata

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _ours(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """procrastinate's tables are its own (applied by a migration), not our models'."""
    table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", "")
    return not str(table or "").startswith("procrastinate")


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        include_object=_ours,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def _migrate(connection: Connection) -> None:
    """The migrations in one transaction. On SQLite with foreign keys off while they run: a
    batch migration rebuilds a table (a new one, the rows copied, the old one dropped, the
    new one renamed), and dropping a group or person table with foreign keys enforced
    deletes its links (ON DELETE CASCADE): an upgrade across such a migration lost every
    student's groups and guardians. The keys are checked before the commit, and enforced
    again after it (SQLite ignores the pragma inside a transaction, hence outside it)."""
    sqlite = connection.dialect.name == "sqlite" and not connection.in_transaction()
    if sqlite:
        _pragma(connection, "foreign_keys=OFF")
    try:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(
                        f"the migration left {len(broken)} rows whose foreign key refers "
                        f"to nothing (first in table {broken[0][0]}); nothing was changed"
                    )
    finally:
        if sqlite:
            if connection.in_transaction():
                connection.commit()
            _pragma(connection, "foreign_keys=ON")


def _pragma(connection: Connection, setting: str) -> None:
    """On the driver's connection, outside a transaction: SQLAlchemy's would begin one
    (app.db emits BEGIN itself), and inside one SQLite ignores this pragma."""
    driver = connection.connection.driver_connection
    assert driver is not None
    driver.execute(f"PRAGMA {setting}")


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    url = config.attributes.get("url") or get_settings().database_url
    engine = make_engine(url)
    with engine.connect() as conn:
        _migrate(conn)
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `esis-sync migrate`")
run_migrations_online()
