"""Turn a request body (JSON or EDEXml XML) into a validated EsisSnapshot."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from app.esis.bounds import (
    MAX_NESTED_ITEMS,
    check_json_lists,
    check_json_values,
    check_xml_attributes,
)
from app.esis.errors import MAX_ERRORS, FormatError, UnsupportedFormat, invalid
from app.esis.leniency import ENTITIES, KeptRecord, set_aside_dependents
from app.esis.media import JSON, XML_TYPES, media_type
from app.esis.schemas import (
    EsisSnapshot,
    SnapshotGroup,
    SnapshotGuardian,
    SnapshotStaff,
    SnapshotStudent,
)

__all__ = ["JSON_TYPES", "UWLR_TYPE", "XML_TYPES", "Parsed", "media_type", "parse_snapshot"]

JSON_TYPES = frozenset({JSON})
# How a pulled UWLR answer (a SOAP envelope) is stored; never accepted from clients.
UWLR_TYPE = "application/vnd.uwlr.leerlinggegevens+xml"
LISTS = ("groups", "students", "guardians", "staff")
# The records limit when the caller gives none (the setting's default).
DEFAULT_MAX_RECORDS = 200_000
# Records validated at once; a chunk with errors is validated again record by record, so that
# no more than about MAX_ERRORS errors are ever built.
CHUNK = 1_000
# Records set aside for an unusable value, at most: a snapshot with more is refused whole.
MAX_KEPT = 10_000
_ITEMS: dict[str, TypeAdapter[Any]] = {
    "groups": TypeAdapter(list[SnapshotGroup]),
    "students": TypeAdapter(list[SnapshotStudent]),
    "guardians": TypeAdapter(list[SnapshotGuardian]),
    "staff": TypeAdapter(list[SnapshotStaff]),
}
# A JSON escape of a UTF-16 surrogate: only in pairs does it make a character.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
# A body of at most this many bytes and JSON values (as `check_json_values` counts them; a
# school of 1,000 students: 654 kB, about 38,000) is first validated whole, by pydantic's own
# JSON reader. What a refused one costs there is bounded by both (found by review): each error
# keeps its own copy of the input it is about, about 0.5 kB and up to the whole record; the
# record lists stop at their first refused record (`fail_fast`), but a record's own lists do
# not. Measured at the bounds: tests/test_json_whole.py. Larger bodies go the chunked way
# only, which builds at most MAX_ERRORS errors.
WHOLE_BODY_BYTES = 1_500_000
WHOLE_BODY_VALUES = 48_000


@dataclass(frozen=True)
class Parsed:
    snapshot: EsisSnapshot
    warnings: list[str] = field(default_factory=list)
    # Records set aside for a value that cannot be used (leniency.py): left as they are.
    kept: list[KeptRecord] = field(default_factory=list)


def parse_snapshot(
    body: bytes, content_type: str | None, *, max_records: int = DEFAULT_MAX_RECORDS
) -> Parsed:
    kind = media_type(content_type)
    if kind in JSON_TYPES:
        snapshot, kept = read_json(body, max_records=max_records)
        return Parsed(snapshot, [k.warning() for k in kept], kept)
    if kind == UWLR_TYPE:
        from app.esis.uwlr import parse_answer, requested_school

        answer = parse_answer(body, requested=requested_school(content_type))
        return Parsed(answer.snapshot, list(answer.warnings))
    if kind in XML_TYPES:
        from app.esis.edexml import read_edexml

        check_xml_attributes(body)
        read = read_edexml(body)
        return Parsed(read.snapshot, list(read.warnings), list(read.kept))
    raise UnsupportedFormat(
        f"send a snapshot as application/json or EDEXml as application/xml, not {kind or 'nothing'}"
    )


def parse_json(body: bytes, *, max_records: int = DEFAULT_MAX_RECORDS) -> EsisSnapshot:
    return read_json(body, max_records=max_records)[0]


def read_json(
    body: bytes, *, max_records: int = DEFAULT_MAX_RECORDS
) -> tuple[EsisSnapshot, list[KeptRecord]]:
    """The snapshot in a JSON body, and the records set aside for a value that cannot be used
    (leniency per record: they are left as they are, not refused with the rest). What it
    costs is bounded before anything is built: the number of values (bytes counted), the
    nesting (Python's recursion limit), the length of every list (before validation), and
    the errors kept (validation stops after MAX_ERRORS).

    A body within WHOLE_BODY_BYTES and WHOLE_BODY_VALUES is first validated whole (`_whole`); only
    when that refuses it is it read in chunks (`read_in_chunks`), which decides what is
    wrong. Both give the same snapshot for a body both accept (tests/test_json_whole.py)."""
    values = check_json_values(body, max_records)
    if (
        len(body) <= WHOLE_BODY_BYTES
        and values <= WHOLE_BODY_VALUES
        and _SURROGATE_ESCAPE.search(body) is None
    ):
        whole = _whole(body, max_records)
        if whole is not None:
            return set_aside_dependents(whole, [])
    return read_in_chunks(body, max_records=max_records)


def read_in_chunks(
    body: bytes, *, max_records: int = DEFAULT_MAX_RECORDS
) -> tuple[EsisSnapshot, list[KeptRecord]]:
    """`read_json` without the whole-body pass: parsed to Python values, the bounds checked,
    the records validated in chunks (each refused chunk record by record), at most about
    MAX_ERRORS errors built, records with an unusable value set aside."""
    check_json_values(body, max_records)
    try:
        raw = _loads(body)
    except RecursionError:
        raise FormatError("the body is not JSON: it is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        where = (
            f" at line {exc.lineno}, column {exc.colno}"
            if isinstance(exc, json.JSONDecodeError)
            else ""
        )
        raise FormatError(f"the body is not JSON{where}") from None
    if _SURROGATE_ESCAPE.search(body) is not None:
        _check_text(raw)
    check_json_lists(raw, LISTS, max_records)
    return _validate(raw)


def _whole(body: bytes, max_records: int) -> EsisSnapshot | None:
    """The snapshot, parsed and validated in one pass (`model_validate_json`): when the body
    is valid, as a daily one is, the same snapshot as the steps of `read_json` make from it,
    in about half the time (no dict per record first, no walk of them for the bounds). None
    when pydantic refuses it or a bound of `check_json_lists` is broken: then those steps
    read it, and say what is wrong in their words (or set aside the records they may)."""
    try:
        snapshot = EsisSnapshot.model_validate_json(body)
    except ValidationError:
        return None
    total = 0
    for name in LISTS:
        records = getattr(snapshot, name)
        total += len(records)
        if len(records) > max_records or total > max_records:
            return None
    # `check_json_lists`'s bound on a record's lists. With extra fields forbidden, these are
    # all the lists a valid record can hold.
    if (
        any(len(s.composite_groups) > MAX_NESTED_ITEMS for s in snapshot.students)
        or any(len(g.students) > MAX_NESTED_ITEMS for g in snapshot.guardians)
        or any(
            len(s.groups) > MAX_NESTED_ITEMS or len(s.roles) > MAX_NESTED_ITEMS
            for s in snapshot.staff
        )
    ):
        return None
    return snapshot


def _check_text(raw: Any) -> None:
    """A lone surrogate (`"\\ud800"`) is valid JSON but no text: no database can store it."""
    try:
        json.dumps(raw, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise FormatError(
            "the body holds an unpaired UTF-16 surrogate (\\ud800-\\udfff), which is not text",
            errors=[{"field": "body", "message": "unpaired surrogate"}],
        ) from None


def _validate(raw: Any) -> tuple[EsisSnapshot, list[KeptRecord]]:
    """`EsisSnapshot.model_validate(raw)`, with at most about MAX_ERRORS errors built.

    The record lists are validated in chunks and the snapshot is then put together from the
    validated records (pydantic does not validate model instances again)."""
    if not isinstance(raw, dict) or not any(isinstance(raw.get(n), list) for n in LISTS):
        try:
            return set_aside_dependents(EsisSnapshot.model_validate(raw), [])
        except ValidationError as exc:
            raise _format_error(exc.errors(include_url=False)[:MAX_ERRORS], raw) from None
    found: list[Any] = []
    head = {k: v for k, v in raw.items() if not (k in LISTS and isinstance(v, list))}
    try:
        EsisSnapshot.model_validate(head)
    except ValidationError as exc:
        found.extend(exc.errors(include_url=False)[:MAX_ERRORS])
    records: dict[str, list[Any]] = {}
    kept: list[KeptRecord] = []
    for name in LISTS:
        items = raw.get(name)
        if isinstance(items, list):
            records[name] = _validate_list(name, items, found, kept)
    if found:
        raise _format_error(found[:MAX_ERRORS], raw)
    try:
        snapshot = EsisSnapshot.model_validate({**head, **records})
    except ValidationError as exc:  # e.g. `carries` that no longer fits
        raise _format_error(exc.errors(include_url=False)[:MAX_ERRORS], raw) from None
    return set_aside_dependents(snapshot, kept)


def _validate_list(
    name: str, items: list[Any], found: list[Any], kept: list[KeptRecord]
) -> list[Any]:
    adapter = _ITEMS[name]
    out: list[Any] = []
    for start in range(0, len(items), CHUNK):
        if len(found) >= MAX_ERRORS:
            break
        chunk = items[start : start + CHUNK]
        try:
            out.extend(adapter.validate_python(chunk))
            continue
        except ValidationError:
            pass
        for offset, item in enumerate(chunk):  # one by one: each record's errors are few
            try:
                out.extend(adapter.validate_python([item]))
            except ValidationError as exc:
                errors = exc.errors(include_url=False)
                key = _usable_key(item)
                if (
                    key is not None
                    and len(kept) < MAX_KEPT
                    and all(len(err["loc"]) > 1 for err in errors)  # inside the record
                ):
                    kept.extend(
                        KeptRecord(
                            ENTITIES[name], key, ".".join(map(str, err["loc"][1:])), err["msg"]
                        )
                        for err in errors
                    )
                    continue
                for err in errors:
                    err["loc"] = (name, start + offset, *err["loc"][1:])
                    found.append(err)
                if len(found) >= MAX_ERRORS:
                    break
    return out


def _usable_key(item: Any) -> str | None:
    """A record can be left as it is only when its key says which one it is."""
    key = item.get("key") if isinstance(item, dict) else None
    if isinstance(key, str | int) and str(key).strip():
        return str(key).strip()
    return None


def _format_error(found: list[Any], raw: Any) -> FormatError:
    return invalid(
        [
            {"field": _field(err["loc"], raw), "message": err["msg"], "type": err["type"]}
            for err in found
        ]
    )


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
