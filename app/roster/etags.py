"""`If-Match` as RFC 9110 (13.1.1) defines it: `*`, or a list of entity tags compared with the
strong comparison, so a weak tag (`W/"2"`) never matches."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Header

from app.errors import PreconditionFailed

# The header parameter of the routes that honour `If-Match`.
IfMatch = Annotated[
    str | None,
    Header(
        max_length=100,
        description="The `ETag` you read; a stale one gets 412 instead of overwriting.",
    ),
]

# entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE, in a comma-separated list (RFC 9110 8.8.3).
_TAG = re.compile(r'\s*(W/)?("[\x21\x23-\x7e\x80-\xff]*")\s*(?:,|$)')


def _tags(header: str) -> list[tuple[bool, str]] | None:
    """(weak, opaque-tag) for each tag of the header; None when it is not a valid list."""
    found: list[tuple[bool, str]] = []
    pos = 0
    while pos < len(header):
        if not header[pos:].strip(" \t,"):
            break
        match = _TAG.match(header, pos)
        if match is None:
            return None
        found.append((match.group(1) is not None, match.group(2)))
        pos = match.end()
    return found


def check_if_match(if_match: str | None, current: str, *, what: str, version: object) -> None:
    """Raise 412 unless `If-Match` is absent, `*`, or names `current` (a strong tag) strongly."""
    if if_match is None or if_match.strip() == "*":
        return
    tags = _tags(if_match)
    if tags and all(weak for weak, _ in tags):
        raise PreconditionFailed(
            "If-Match needs the strong ETag the record was read with (a weak W/ tag never "
            f"matches, RFC 9110); the current one is {current}",
            current_etag=current,
        )
    if tags is None or (False, current) not in tags:
        raise PreconditionFailed(
            f"the {what} changed since you read it (now version {version}); read it again and "
            "reapply your change",
            current_etag=current,
        )
