"""`app.db.new_id` makes the UUIDs `uuid.uuid4()` makes, by a shorter path."""

from __future__ import annotations

import os
import pickle
import uuid

import pytest

from app.db import _version_4, new_id


def test_the_same_uuid_as_uuid4_makes_of_the_same_bytes() -> None:
    for raw in [bytes(16), b"\xff" * 16, *(os.urandom(16) for _ in range(2000))]:
        ours, theirs = _version_4(raw), uuid.UUID(bytes=raw, version=4)
        assert type(ours) is uuid.UUID
        assert ours == theirs
        assert (ours.int, str(ours), hash(ours)) == (theirs.int, str(theirs), hash(theirs))
        assert (ours.version, ours.variant, ours.is_safe) == (4, uuid.RFC_4122, theirs.is_safe)
        assert pickle.loads(pickle.dumps(ours)) == theirs


def test_new_ids_are_random_version_4_uuids() -> None:
    ids = {new_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert {(i.version, i.variant) for i in ids} == {(4, uuid.RFC_4122)}
    with pytest.raises(TypeError, match="immutable"):
        next(iter(ids)).int = 1  # type: ignore[misc]
