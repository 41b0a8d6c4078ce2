"""The one reading of a `Content-Type` header for the whole service.

Media types are case-insensitive and their parameters (`; charset=...`) do not change what a
body is, so `APPLICATION/JSON; charset=utf-8` is JSON everywhere: in the NUL guard, in the
snapshot parsers and in the routes. Two readings that disagree are how a body slips past one
check and into another path.
"""

from __future__ import annotations

JSON = "application/json"
XML_TYPES = frozenset({"application/xml", "text/xml"})


def media_type(content_type: str | bytes | None) -> str:
    """`type/subtype`, lower case, without parameters; "" when there is none."""
    if content_type is None:
        return ""
    if isinstance(content_type, bytes):
        content_type = content_type.decode("latin-1")
    return content_type.split(";", 1)[0].strip().lower()


def is_json(content_type: str | bytes | None) -> bool:
    """JSON or a JSON-based type (`application/problem+json`, `application/merge-patch+json`)."""
    kind = media_type(content_type)
    return kind == JSON or kind.endswith("+json")
