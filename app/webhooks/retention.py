"""The delivery log is kept as long as the feed's events (`esis-sync purge` prunes both)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from app.db import utcnow
from app.webhooks import repository


def prune_deliveries(
    *, session: Session, retention_days: int, now: dt.datetime | None = None
) -> int:
    cutoff = (now or utcnow()) - dt.timedelta(days=retention_days)
    return repository.delete_deliveries_before(session=session, cutoff=cutoff)
