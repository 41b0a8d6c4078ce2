"""A JSON snapshot read whole (`parsing._whole`, pydantic's own JSON reader) is read exactly as
the chunked way reads it (`read_in_chunks`): the same snapshot, the same fields given (which
decide what the snapshot carries), the same records set aside; and whatever the whole pass
refuses, the chunked way decides, with its own words and bounds (issue 18: the no-change push).
"""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from app.esis import parsing
from app.esis.bounds import MAX_NESTED_ITEMS
from app.esis.errors import FormatError
from app.esis.parsing import WHOLE_BODY_BYTES, WHOLE_BODY_VALUES, read_in_chunks, read_json
from app.esis.schemas import EsisSnapshot

BASE: dict[str, Any] = {
    "school": {"brin": "12AB", "branch": "00", "school_year": "2026-2027"},
    "groups": [
        {"key": "G5A", "name": "Groep 5a", "year_level": 5},
        {"key": "LEES", "name": "Leesgroep", "is_composite": True},
    ],
    "students": [
        {
            "key": "00001",
            "last_name": "Jansen",
            "given_name": "Sanne",
            "birth_date": "2018-03-01",
            "gender": "female",
            "year_level": 5,
            "group": "G5A",
            "composite_groups": ["LEES"],
        },
        {"key": "00002", "last_name": "Bos", "group": "G5A"},
    ],
    "guardians": [
        {
            "key": "V1",
            "last_name": "Jansen",
            "email": "ouder@example.nl",
            "students": [{"student": "00001", "relation": "mother"}],
        }
    ],
    "staff": [{"key": "LK1", "last_name": "Bakker", "roles": ["LRK"], "groups": ["G5A"]}],
}


def _fields_set(value: Any) -> Any:
    """Every model's fields given, all the way down (equality of models does not see them)."""
    if hasattr(value, "model_fields_set"):
        return (
            type(value).__name__,
            sorted(value.model_fields_set),
            {name: _fields_set(getattr(value, name)) for name in sorted(value.model_fields_set)},
        )
    if isinstance(value, list | tuple):
        return [_fields_set(v) for v in value]
    return None


def _outcome(read: Any, body: bytes, max_records: int) -> tuple[Any, ...]:
    try:
        snapshot, kept = read(body, max_records=max_records)
    except FormatError as exc:
        return ("refused", exc.status, exc.detail, exc.extra)
    return ("read", snapshot, _fields_set(snapshot), snapshot.scope, kept)


def _same(body: bytes, max_records: int = 10_000) -> tuple[Any, ...]:
    whole = _outcome(read_json, body, max_records)
    chunked = _outcome(read_in_chunks, body, max_records)
    assert whole == chunked
    return whole


def _body(value: Any) -> bytes:
    return json.dumps(value).encode()


def test_a_valid_body_is_read_whole_and_as_the_chunked_way_reads_it() -> None:
    body = _body(BASE)
    assert parsing._whole(body, 10_000) is not None  # the whole pass took it
    assert _same(body)[0] == "read"


@pytest.mark.parametrize(
    "body",
    [
        # The same key twice: the last one counts, in both readers.
        b'{"school": {"brin": "12AB", "branch": "00", "school_year": "2025-2026", '
        b'"school_year": "2026-2027"}, "students": [{"key": "1", "last_name": "A", '
        b'"last_name": "B"}]}',
        # Numbers as they come: 5.0 for an integer, a 30-digit integer, an exponent.
        _body({**BASE, "students": [{"key": "1", "last_name": "A", "year_level": 5.0}]}),
        _body({**BASE, "students": [{"key": "1", "last_name": "A", "year_level": 10**30}]}),
        b'{"school": {"brin": "12AB", "branch": "00", "school_year": "2026-2027"}, '
        b'"students": [{"key": "1", "last_name": "A", "year_level": 5e0}]}',
        # A key as a number, a lower-case BRIN, text escapes, a surrogate pair, a lone one.
        _body({**BASE, "students": [{"key": 7, "last_name": "A"}]}),
        _body({**BASE, "school": {**BASE["school"], "brin": "12ab"}}),
        _body({**BASE, "students": [{"key": "1", "last_name": "J\u00e9r\u00f4me \u2603"}]}),
        b'{"school": {"brin": "12AB", "branch": "00", "school_year": "2026-2027"}, '
        b'"students": [{"key": "1", "last_name": "\\ud83d\\ude00"}]}',
        b'{"school": {"brin": "12AB", "branch": "00", "school_year": "2026-2027"}, '
        b'"students": [{"key": "1", "last_name": "\\ud800"}]}',
        # Not JSON, or not the right JSON: a BOM, NaN, trailing text, a list, nothing.
        b"\xef\xbb\xbf" + _body(BASE),
        b'{"school": {"brin": "12AB", "branch": "00", "school_year": "2026-2027"}, '
        b'"students": [{"key": "1", "last_name": "A", "year_level": NaN}]}',
        _body(BASE) + b" x",
        b"[]",
        b"",
        _body(BASE).decode().encode("utf-16"),
        # Errors of every kind, an unknown field, a record set aside, its guardian too.
        _body({**BASE, "students": [{"key": "1", "last_name": "A", "shoe_size": 40}]}),
        _body({**BASE, "students": [*BASE["students"], {"key": "3", "birth_date": "2018-13-01"}]}),
        _body({**BASE, "students": [{"key": "", "last_name": "A"}]}),
        _body({**BASE, "carries": ["students"]}),
        _body({k: v for k, v in BASE.items() if k != "guardians"}),
        _body({**BASE, "staff": [{"key": "LK1", "last_name": "B", "groups": None}]}),
    ],
    ids=lambda b: orjson.dumps(b[:60].decode("utf-8", "replace")).decode()[:60],
)
def test_bodies_at_the_edges_read_the_same_either_way(body: bytes) -> None:
    _same(body)


def test_the_bounds_of_the_chunked_way_hold_for_the_whole_pass() -> None:
    """More records than allowed, or a record's list longer than allowed: the whole pass
    does not take it, and the chunked way refuses it in its words."""
    three = _body(BASE)  # 2 groups + 2 students + 1 guardian + 1 staff = 6 records
    assert _same(three, max_records=5)[0] == "refused"
    assert _same(three, max_records=6)[0] == "read"
    many = copy.deepcopy(BASE)
    many["groups"] += [{"key": f"C{n}", "name": f"C{n}", "is_composite": True} for n in range(1001)]
    many["students"][0]["composite_groups"] = [f"C{n}" for n in range(MAX_NESTED_ITEMS + 1)]
    refused = _same(_body(many))
    assert refused[0] == "refused" and "more than 1000 items in one record" in refused[2]
    many["students"][0]["composite_groups"] = [f"C{n}" for n in range(MAX_NESTED_ITEMS)]
    assert _same(_body(many))[0] == "read"


def test_a_large_body_is_read_in_chunks_only() -> None:
    """Beyond WHOLE_BODY_VALUES a refused body would build every error at once."""
    big = copy.deepcopy(BASE)
    big["students"] = [{"key": f"{n}", "last_name": 5} for n in range(WHOLE_BODY_VALUES // 2)]
    body = _body(big)
    assert body.count(b"{") + body.count(b"[") + body.count(b",") > WHOLE_BODY_VALUES
    refused = _same(body, max_records=100_000)
    assert refused[0] == "refused" and len(refused[3]["errors"]) <= 60


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["2018-03-01", "2018-02-30", "female", "mother", "LRK", "G5A", "LEES"]),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)
_PLACES = [
    ("school", None),
    ("groups", 0),
    ("groups", 1),
    ("students", 0),
    ("students", 1),
    ("guardians", 0),
    ("staff", 0),
]
_NAMES = sorted(
    {
        name
        for part in ("groups", "students", "guardians", "staff")
        for r in BASE[part]
        for name in r
    }
    | {"brin", "branch", "school_year", "generated_at", "initials", "name_prefix", "email", "phone"}
)


@given(
    st.lists(
        st.tuples(st.sampled_from(_PLACES), st.sampled_from(_NAMES), _JSON | st.just("__drop__")),
        max_size=4,
    )
)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_property_any_edit_of_a_valid_body_reads_the_same_either_way(
    edits: list[tuple[tuple[str, int | None], str, Any]],
) -> None:
    """A valid snapshot with up to four fields set to any JSON value, or removed: whichever
    the whole pass takes, the chunked way reads the same; the rest the chunked way decides."""
    body = copy.deepcopy(BASE)
    for (part, index), name, value in edits:
        target = body[part] if index is None else body[part][index]
        if value == "__drop__":
            target.pop(name, None)
        else:
            target[name] = value
    raw = _body(body)
    event("read whole" if parsing._whole(raw, 10_000) is not None else "read in chunks")
    _same(raw)


def test_the_whole_pass_stops_at_the_first_refused_record_of_each_list() -> None:
    """`fail_fast` on the record lists (found by review: each error keeps a copy of its
    input, so a refused body of many bad records built tens of MB there)."""
    bad = {
        "school": BASE["school"],
        "guardians": [{"zz": 1}] * 500,
        "students": [{"key": str(n), "shoe_size": 1} for n in range(500)],
    }
    with pytest.raises(ValidationError) as caught:
        EsisSnapshot.model_validate_json(_body(bad))
    assert caught.value.error_count() <= 6  # one record of each list, not a thousand
    _same(_body(bad))


def test_a_refused_body_at_the_bounds_is_refused_quickly_and_the_same_way() -> None:
    """The worst the whole pass meets within its bounds: one record with a long list of
    refused items (a record's own lists do not stop early), about 40 MB for a moment."""
    school = BASE["school"]
    links = [{"zz": 1}] * ((WHOLE_BODY_VALUES - 100) // 2)
    body = _body(
        {"school": school, "guardians": [{"key": "V1", "last_name": "A", "students": links}]}
    )
    assert len(body) <= WHOLE_BODY_BYTES
    assert body.count(b"{") + body.count(b"[") + body.count(b",") <= WHOLE_BODY_VALUES
    started = time.monotonic()
    refused = _same(body)
    assert time.monotonic() - started < 2.0
    assert refused[0] == "refused" and "more than 1000 items in one record" in refused[2]
