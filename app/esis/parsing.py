"""Turn a request body (JSON or EDEXml XML) into a validated EsisSnapshot."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import ValidationError

from app.esis.errors import FormatError, UnsupportedFormat, invalid
from app.esis.schemas import EsisSnapshot

JSON_TYPES = frozenset({"application/json"})
XML_TYPES = frozenset({"application/xml", "text/xml"})
# How a pulled UWLR answer (a SOAP envelope) is stored; never accepted from clients.
UWLR_TYPE = "application/vnd.uwlr.leerlinggegevens+xml"
LISTS = ("groups", "students", "guardians", "staff")


@dataclass(frozen=True)
class Parsed:
    snapshot: EsisSnapshot
    warnings: list[str] = field(default_factory=list)


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_snapshot(body: bytes, content_type: str | None) -> Parsed:
    kind = media_type(content_type)
    if kind in JSON_TYPES:
        return Parsed(parse_json(body))
    if kind == UWLR_TYPE:
        from app.esis.uwlr import parse_answer, requested_school

        answer = parse_answer(body, requested=requested_school(content_type))
        return Parsed(answer.snapshot, list(answer.warnings))
    if kind in XML_TYPES:
        from app.esis.edexml import read_edexml

        read = read_edexml(body)
        return Parsed(read.snapshot, list(read.warnings))
    raise UnsupportedFormat(
        f"send a snapshot as application/json or EDEXml as application/xml, not {kind or 'nothing'}"
    )


def parse_json(body: bytes) -> EsisSnapshot:
    try:
        raw = _loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        where = (
            f" at line {exc.lineno}, column {exc.colno}"
            if isinstance(exc, json.JSONDecodeError)
            else ""
        )
        raise FormatError(f"the body is not JSON{where}") from None
    try:
        return EsisSnapshot.model_validate(raw)
    except ValidationError as exc:
        errors = [
            {"field": _field(err["loc"], raw), "message": err["msg"], "type": err["type"]}
            for err in exc.errors()
        ]
        raise invalid(errors) from None


def _loads(body: bytes) -> Any:
    """orjson first (several times faster on a school's body); what it refuses (another
    encoding than UTF-8, integers beyond 64 bits, NaN) goes to the standard library, so the
    accepted bodies and the error messages stay exactly those of `json.loads`."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)


def _field(loc: tuple[Any, ...], raw: Any) -> str:
    """`students[3] (key 00004).birth_date`: the path, and the key of the record it is in."""
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
            if i == 1 and loc[0] in LISTS:
                key = _key_at(raw, str(loc[0]), part)
                if key is not None:
                    out += f" (key {key})"
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


def _key_at(raw: Any, name: str, index: int) -> str | None:
    try:
        key = raw[name][index]["key"]
    except (KeyError, IndexError, TypeError):
        return None
    return str(key) if isinstance(key, str | int) else None
