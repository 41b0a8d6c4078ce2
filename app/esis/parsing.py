"""Turn a request body (JSON or EDEXml XML) into a validated EsisSnapshot."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from app.esis.errors import FormatError, UnsupportedFormat, invalid
from app.esis.leniency import ENTITIES, KeptRecord, set_aside_dependents
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
    # Records set aside for a value that cannot be used (leniency.py): left as they are.
    kept: list[KeptRecord] = field(default_factory=list)


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_snapshot(body: bytes, content_type: str | None) -> Parsed:
    kind = media_type(content_type)
    if kind in JSON_TYPES:
        snapshot, kept = read_json(body)
        return Parsed(snapshot, [k.warning() for k in kept], kept)
    if kind == UWLR_TYPE:
        from app.esis.uwlr import parse_answer, requested_school

        answer = parse_answer(body, requested=requested_school(content_type))
        return Parsed(answer.snapshot, list(answer.warnings), list(answer.kept))
    if kind in XML_TYPES:
        from app.esis.edexml import read_edexml

        read = read_edexml(body)
        return Parsed(read.snapshot, list(read.warnings), list(read.kept))
    raise UnsupportedFormat(
        f"send a snapshot as application/json or EDEXml as application/xml, not {kind or 'nothing'}"
    )


def parse_json(body: bytes) -> EsisSnapshot:
    return read_json(body)[0]


def read_json(body: bytes) -> tuple[EsisSnapshot, list[KeptRecord]]:
    """A JSON snapshot, and the records set aside for a value that cannot be used.

    Validated whole first (the common, clean case costs one pass). When only records fail,
    those are set aside and the rest validated again; any other error (not an object, a
    wrong top-level shape, the school, a record without a usable key) refuses it all."""
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        where = (
            f" at line {exc.lineno}, column {exc.colno}"
            if isinstance(exc, json.JSONDecodeError)
            else ""
        )
        raise FormatError(f"the body is not JSON{where}") from None
    try:
        return set_aside_dependents(EsisSnapshot.model_validate(raw), [])
    except ValidationError as exc:
        failed = exc.errors(include_url=False, include_input=False)
    bad = _bad_records(raw, failed)
    if bad is None:
        raise _refused(raw, failed) from None
    cleaned = {
        **raw,
        **{
            name: [item for i, item in enumerate(raw[name]) if (name, i) not in bad]
            for name in {name for name, _ in bad}
        },
    }
    try:
        snapshot = EsisSnapshot.model_validate(cleaned)
    except ValidationError as exc:  # e.g. `carries` that no longer fits
        raise _refused(raw, exc.errors(include_url=False, include_input=False)) from None
    kept = [
        KeptRecord(ENTITIES[name], key, field, message)
        for (name, _), (key, problems) in bad.items()
        for field, message in problems
    ]
    return set_aside_dependents(snapshot, kept)


def _refused(raw: Any, errors: list[Any]) -> FormatError:
    return invalid(
        [
            {"field": _field(err["loc"], raw), "message": err["msg"], "type": err["type"]}
            for err in errors
        ]
    )


def _bad_records(
    raw: dict[str, Any], errors: list[Any]
) -> dict[tuple[str, int], tuple[str, list[tuple[str, str]]]] | None:
    """(list, index) -> (key, [(field, reason)]) when every error lies inside a record that
    has a usable key; None when any does not (the snapshot is refused then)."""
    bad: dict[tuple[str, int], tuple[str, list[tuple[str, str]]]] = {}
    for err in errors:
        loc = err["loc"]
        if len(loc) < 3 or loc[0] not in ENTITIES or not isinstance(loc[1], int):
            return None
        key = _key_at(raw, str(loc[0]), loc[1])
        if key is None or not key.strip():
            return None  # without its key a record cannot be left as it is: refused
        field = ".".join(str(part) for part in loc[2:])
        bad.setdefault((loc[0], loc[1]), (key.strip(), []))[1].append((field, err["msg"]))
    return bad


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
