"""What the ESIS edge raises for input it cannot use: the sender's fault, never ours.

The edge knows nothing of HTTP; these carry the status and problem type the service answers
with (`app.errors` renders them like its own domain errors)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class FormatError(Exception):
    """A body, answer or certificate that cannot be used (422)."""

    status: int = 422
    slug: str = "validation"
    title: str = "Request is not valid"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra
        self.headers: dict[str, str] = {}


class UnsupportedFormat(FormatError):
    """A media type the edge cannot read (415)."""

    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"


# A problem lists at most MAX_ERRORS errors; its detail line names the first SHOWN of them.
MAX_ERRORS = 50
SHOWN = 5


def summarise(errors: Sequence[Mapping[str, Any]]) -> str:
    """The detail line of a problem listing `errors`: the first few, then how many more."""
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:SHOWN])
    if len(errors) > SHOWN:
        detail += f" (and {len(errors) - SHOWN} more)"
    return detail


def invalid(errors: Sequence[Mapping[str, Any]]) -> FormatError:
    """One 422 for a list of errors (`field`, `message`, ...): summarised, capped."""
    return FormatError(summarise(errors), errors=[dict(e) for e in errors[:MAX_ERRORS]])
