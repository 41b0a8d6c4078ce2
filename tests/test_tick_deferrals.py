"""The tick queues its pulls in batches (issue 18): one INSERT for many schools, and a school
still queued from an earlier tick is neither queued twice nor in the way of the others."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text

from app.config import Settings
from app.jobs import defer_pulls, make_app
from tests.conftest import postgres_database


@pytest.fixture
def pg() -> Iterator[str]:
    with postgres_database() as url:
        yield url


def _queued(url: str) -> list[tuple[str, str, str, str]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT task_name, lock, queueing_lock, args->>'school_id' "
                    "FROM procrastinate_jobs WHERE status = 'todo' ORDER BY id"
                )
            ).all()
    finally:
        engine.dispose()
    return [(r[0], r[1], r[2], r[3]) for r in rows]


def test_r3_tick_defers_pulls_in_one_batch_and_skips_a_school_still_queued(pg: str) -> None:
    settings = Settings(
        database_url=pg,
        bootstrap_operator_key=False,
        secret_key=Fernet.generate_key().decode(),
        _env_file=None,
    )
    app = make_app(settings)
    first = [uuid.UUID(int=i) for i in range(1, 4)]
    later = [first[1], uuid.UUID(int=9)]  # the second is new, the first still queued

    async def defer() -> None:
        async with app.open_async():
            await defer_pulls(app, first)
            await defer_pulls(app, later)
            await defer_pulls(app, [])

    asyncio.run(defer())
    queued = _queued(pg)
    assert queued == [
        ("pull_school", f"school:{s}", f"pull:{s}", str(s)) for s in [*first, later[1]]
    ]
