"""Feed retention: `esis-sync purge` compacts old events; a cursor from before the oldest
kept event gets 410 Gone, saying to resync from the roster lists and where to resume."""

from __future__ import annotations

import datetime as dt

from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from app.cli import cli
from app.config import get_settings
from app.db import metadata, utcnow
from app.pagination import encode_cursor
from tests.factories import auth, make_school
from tests.merge_helpers import activate, applied, push, rows
from tests.snapshots import changed, find, school_snapshot


def _age_events(db: sessionmaker[Session], through_seq: int, days: int) -> None:
    event = metadata.tables["event"]
    with db.begin() as session:
        session.execute(
            update(event)
            .where(event.c.seq <= through_seq)
            .values(occurred_at=utcnow() - dt.timedelta(days=days))
        )


def _purge(database_url: str, days: int = 30) -> str:
    get_settings.cache_clear()
    env = {"ESIS_SYNC_DATABASE_URL": database_url, "ESIS_SYNC_FEED_RETENTION_DAYS": str(days)}
    try:
        result = CliRunner().invoke(cli, ["purge"], env=env)
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    return result.output


def test_purge_compacts_old_events_and_old_cursors_get_410_with_where_to_resume(
    client: TestClient, db: sessionmaker[Session], database_url: str
) -> None:
    school = make_school(client, db)
    snap = school_snapshot()
    activate(client, school, snap)
    url = f"/api/v1/schools/{school.key}/events"
    first = client.get(url, params={"limit": 2}, headers=auth(school.reader)).json()
    stale_cursor = first["next_cursor"]  # a follower stopped after event 2
    before = max(e["seq"] for e in rows(db, "event"))
    later = changed(snap)
    find(later, "groups", "G5A")["name"] = "Groep 5 A"
    applied(push(client, school, later))
    total = max(e["seq"] for e in rows(db, "event"))
    assert total > before
    _age_events(db, before, days=31)

    out = _purge(database_url)
    assert "feed 30 days" in out
    assert f"{before} events" in out
    kept = sorted(e["seq"] for e in rows(db, "event"))
    assert kept == list(range(before + 1, total + 1))

    gone = client.get(url, params={"after": stale_cursor}, headers=auth(school.reader))
    assert gone.status_code == 410, gone.text
    assert gone.headers["content-type"].startswith("application/problem+json")
    problem = gone.json()
    assert problem["type"] == "/problems/feed-compacted"
    assert problem["resume_after"] == before
    assert problem["oldest_seq"] == before + 1
    assert problem["resync"] == ["groups", "students", "guardians", "staff"]
    assert "roster lists" in problem["detail"]
    resumed = client.get(
        url, params={"after": problem["resume_cursor"]}, headers=auth(school.reader)
    )
    assert resumed.status_code == 200
    assert [e["seq"] for e in resumed.json()["items"]] == kept
    # No cursor at all: a new follower starts at the oldest kept event.
    fresh = client.get(url, headers=auth(school.reader)).json()
    assert fresh["items"][0]["seq"] == before + 1
    # A cursor just before the oldest kept event misses nothing.
    edge = client.get(url, params={"after": encode_cursor(before)}, headers=auth(school.reader))
    assert edge.status_code == 200


def test_purge_keeps_events_inside_the_window_and_each_schools_newest(
    client: TestClient, db: sessionmaker[Session], database_url: str
) -> None:
    school = make_school(client, db)
    activate(client, school, school_snapshot())
    total = max(e["seq"] for e in rows(db, "event"))
    _age_events(db, total - 1, days=10)
    _purge(database_url)
    assert len(rows(db, "event")) == total  # 10 days old: inside the 30-day window
    _age_events(db, total, days=40)
    _purge(database_url)
    assert [e["seq"] for e in rows(db, "event")] == [total]  # the newest stays
    page = client.get(
        f"/api/v1/schools/{school.key}/events",
        params={"after": encode_cursor(total - 1)},
        headers=auth(school.reader),
    )
    assert page.status_code == 200
    assert [e["seq"] for e in page.json()["items"]] == [total]
    old = client.get(
        f"/api/v1/schools/{school.key}/events",
        params={"after": encode_cursor(1)},
        headers=auth(school.reader),
    )
    assert old.status_code == 410
