"""The delivery log is kept as long as the feed's events (`esis-sync purge` prunes both)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete
from sqlalchemy.orm import Session

from app.db import utcnow
from app.webhooks.models import WebhookDelivery


def prune_deliveries(
    *, session: Session, retention_days: int, now: dt.datetime | None = None
) -> int:
    cutoff = (now or utcnow()) - dt.timedelta(days=retention_days)
    table = WebhookDelivery.__table__  # type: ignore[attr-defined]
    result = session.execute(delete(table).where(table.c.attempted_at < cutoff))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
