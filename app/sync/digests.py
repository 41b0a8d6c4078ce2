"""The record digest (issue 18): an unchanged record settled by one comparison.

The merge stores beside each record a digest of the values ESIS sent and of the record's
`version` (`esis_digest`), and only when, after that merge, the record equals those values in
every field ESIS sends, lives (not deleted, not a tombstone) and is listed (not marked
missing); otherwise NULL. The digest is a claim: "at this version, ours is what ESIS sends".

Every write of a field ESIS sends bumps `version` (the API's ETag: a user's edit, a contact
file's correction, an accepted drift, a key change), so such a write makes the claim stale:
the digest of the same values at the new version differs, and the record goes the full path
again. Writes that do not bump it touch only what is checked beside the digest (the missing
mark, the deletion, the tombstone) or columns ESIS does not send.

So a record whose stored digest equals the digest of what ESIS sends now, at its version,
with none of those marks and no open drift, agrees with ESIS in every field: the merge's
short-cut (`records.agrees`) would take it, with the same outcome. Such records are not read
whole (`repository.load_state(narrow=...)`, then `fill` for the rest).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable

import orjson

from app.sync.plan import EntityState, Row


def digest(record_id: uuid.UUID, values: Row, version: int) -> str:
    """128 bits of BLAKE2b over the version and the values (names and JSON values, in the
    spec's order), keyed with the record's id: two records with the same values (within a
    school or across schools) have different digests, and a digest alone confirms no guess
    of a person's data without the record's id. 32 hex digits."""
    data = orjson.dumps((version, values))
    return hashlib.blake2b(data, digest_size=16, key=record_id.bytes).hexdigest()


def settle(
    current: EntityState, incoming: Iterable[tuple[str, Row]], drifting: set[uuid.UUID]
) -> set[uuid.UUID]:
    """Ids of the records whose stored digest is the digest of what ESIS sends for them now,
    with nothing pending locally (no missing mark, deletion, tombstone or drift)."""
    by_key = current.by_key
    settled: set[uuid.UUID] = set()
    # By key as the merge takes them (the last of a key wins; a received snapshot has none
    # twice, check_snapshot refuses that).
    for key, values in dict(incoming).items():
        row = by_key.get(key)
        if (
            row is None
            or row["esis_digest"] is None
            or row["missing_in_esis_since"] is not None
            or row["deleted_at"] is not None
            or row["tombstoned_at"] is not None
            or row["id"] in drifting
        ):
            continue
        if row["esis_digest"] == digest(row["id"], values, row["version"]):
            settled.add(row["id"])
    return settled
