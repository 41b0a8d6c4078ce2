"""The cyclic collector waits while a snapshot is read and applied (app/sync/gcpause.py), and
the push frees the snapshot before it resumes.

Alive when the collector resumes, the snapshot's objects (models, lists, dicts: tens of
thousands for a 1,000-student school) are walked by the collection that the first allocation
after the pause sets off: 6 to 12 ms of a push (issue 18). Freed while the collector waits,
they are never walked.
"""

from __future__ import annotations

import gc
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import make_school
from tests.merge_helpers import activate, push
from tests.snapshots import school_snapshot


def test_a_push_frees_its_snapshot_before_the_collector_resumes(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db)
    snapshot = school_snapshot(students=400)
    activate(client, school, snapshot)
    assert push(client, school, snapshot).status_code == 201  # warm: imports, caches
    walked: list[int] = []

    def watch(phase: str, info: dict[str, Any]) -> None:
        if phase == "start" and info["generation"] == 0:
            walked.append(len(gc.get_objects(generation=0)))

    thresholds = gc.get_threshold()
    # CPython's default, not the service's (app.main._tune_gc: 50,000, which a push of this
    # size stays under): so that a collection runs whenever the pause ends with a backlog.
    gc.set_threshold(700, 10, 10)
    gc.collect()  # what the test's setup left young
    gc.callbacks.append(watch)
    try:
        response = push(client, school, snapshot)
    finally:
        gc.callbacks.remove(watch)
        gc.set_threshold(*thresholds)
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "applied"
    # A collection of the young generation walks what was allocated since the last one and is
    # still alive: under its threshold (700) when nothing large is. With the 400 students'
    # snapshot alive at the end of the pause, the collection it set off walked about 4,600.
    assert walked, "no collection ran: the test would prove nothing"
    assert max(walked) < 2_000, walked
