"""The byte scans before an XML body is parsed refuse and find exactly what their plain forms
would, in time linear in the body (issue 18 made both faster; a review found a first version
of the attribute bound quadratic on a crafted body, 60 s for 16 MiB).

* `check_xml_attributes`: a start tag of at least 256 bytes with more than 64 `=` is refused
  at its line, as `<[^<>]{256,}` tried at each `<` finds it;
* `blanks_droppable`'s `_lacks(body, mark, start)`: `body.find(mark, start) < 0`.
"""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.esis import bounds
from app.esis.bounds import MAX_XML_ATTRIBUTES, check_xml_attributes
from app.esis.errors import FormatError
from app.esis.xml import _lacks

_TAG = re.compile(rb"<[^<>]{256,}")
NEWLINE = b"\n"


def plain(body: bytes) -> str | None:
    """The bound written plainly: every long tag looked at."""
    for match in _TAG.finditer(body):
        tag = match.group()
        if not tag.startswith((b"<!--", b"<![CDATA[")) and tag.count(b"=") > MAX_XML_ATTRIBUTES:
            return f"line {body.count(NEWLINE, 0, match.start()) + 1}"
    return None


def ours(body: bytes) -> str | None:
    try:
        check_xml_attributes(body)
    except FormatError as exc:
        return str(exc.detail).partition(":")[0]
    return None


_ATOMS = st.sampled_from(
    [b"<", b">", b"=", b"a", b" ", b"\n", b'"', b"<!--", b"-->", b"<![CDATA[", b"]]>", b"<a",
     b' k="v"', b"=" * 64, b"=" * 65, b"x" * 100, b"x" * 300, b"/>"]
)  # fmt: skip
_BODIES = st.lists(st.tuples(_ATOMS, st.integers(1, 70)), max_size=12).map(
    lambda parts: b"".join(atom * n for atom, n in parts)
)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_BODIES)
def test_the_attribute_bound_refuses_what_the_plain_one_refuses(body: bytes) -> None:
    assert ours(body) == plain(body)


@pytest.mark.parametrize(
    "unit",
    [b"<" + b"=" * 65, b">" + b"=" * 65, b"<a" + b"=" * 65, b"<" + b"=" * 64 + b"a" * 20_000],
    ids=["after <", "after >", "short tags", "long text after 64"],
)
def test_the_attribute_bound_is_linear(unit: bytes) -> None:
    """16 MiB of the bodies that made the first version quadratic (or 50 times slower)."""
    body = unit * (16 * 1024 * 1024 // len(unit))
    started = time.perf_counter()
    assert ours(body) == plain(body) is None  # short tags, or text: nothing to refuse
    assert time.perf_counter() - started < 5  # 60-80 s when quadratic; about 0.5 s now


def test_a_crowded_tag_is_refused_at_its_line() -> None:
    attributes = " ".join(f'a{i}="1"' for i in range(MAX_XML_ATTRIBUTES + 1))
    body = f'<?xml version="1.0"?>\n<EDEX>\n<school {attributes}/></EDEX>'.encode()
    assert ours(body) == plain(body) == "line 3"
    assert bounds._CROWDED in body.translate(None, bounds._NOT_MARKS)


@settings(max_examples=2000, deadline=None)
@given(
    st.lists(
        st.sampled_from([b"<", b"!", b"?", b"a", b"<!", b"<?", b"!" * 70, b"?" * 70]), max_size=40
    ).map(b"".join),
    st.integers(0, 200),
    st.sampled_from([b"<!", b"<?"]),
)
def test_lacks_is_find(body: bytes, start: int, mark: bytes) -> None:
    assert _lacks(body, mark, start) == (body.find(mark, start) < 0)
