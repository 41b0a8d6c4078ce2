"""National ids out of a stored body (`app/esis/scrub.py`), and its pre-check: a body with no
name that starts `bsn` or `onderwijsnummer` is kept as it is, without running the patterns.
The property holds the pre-check to what the patterns alone give (the function before it)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from app.esis import scrub
from app.esis.scrub import strip_national_ids

JSON = "application/json"
XML = "application/xml"


def _patterns_only(body: bytes, content_type: str) -> bytes:
    """What `strip_national_ids` gave before the pre-check, for one-byte and UTF-8 bodies."""
    if content_type == JSON:
        return scrub._JSON_ID.sub(rb"\1null", body) if b'"' in body else body
    if content_type == XML:
        return scrub._XML_ID.sub(b"", body)
    return scrub._XML_ID.sub(b"", scrub._JSON_ID.sub(rb"\1null", body))


PIECES = st.sampled_from(
    [
        b'"bsn": "999990019"',
        b'"BSN":123456782',
        b'"Onderwijsnummer" : "x"',
        b'"bsn_ondwnr-4":1',
        b"<bsn>123</bsn>",
        b"<BSN/>",
        b"<ns:bsn_ondwnr-4 a='1'>9</ns:bsn_ondwnr-4>",
        b'"bs"',
        b'"name": "Bsnelle"',
        b"{",
        b"}",
        b",",
        b" ",
        b'"',
        b"<",
        b">",
        b"n",
        b"s",
        b"b",
        b"\xc3\xa9",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(PIECES, max_size=30), st.sampled_from([JSON, XML, "text/plain"]))
def test_the_pre_check_changes_nothing_the_patterns_would_do(
    pieces: list[bytes], content_type: str
) -> None:
    body = b"".join(pieces)
    assert strip_national_ids(body, content_type) == _patterns_only(body, content_type)


def test_national_ids_in_any_case_are_removed() -> None:
    body = b'{"students": [{"key": "1", "BSN": "999990019", "Onderwijsnummer": "123456782"}]}'
    assert strip_national_ids(body, JSON) == (
        b'{"students": [{"key": "1", "BSN": null, "Onderwijsnummer": null}]}'
    )
    assert strip_national_ids(b"<leerling><Bsn>999990019</Bsn></leerling>", XML) == (
        b"<leerling></leerling>"
    )


def test_a_body_without_such_a_name_is_kept_as_it_is() -> None:
    body = b'{"students": [{"key": "1", "last_name": "Jansen"}]}'
    assert strip_national_ids(body, JSON) is body


def test_utf16_edexml_is_still_stripped() -> None:
    """The pre-check reads bytes: in UTF-16 `bsn` is not three adjacent bytes, so a wide
    body goes to its own path before the check."""
    for encoding in ("utf-16-le", "utf-16"):
        text = '<?xml version="1.0" encoding="UTF-16"?><leerling><bsn>999990019</bsn></leerling>'
        body = text.encode(encoding)
        stripped = strip_national_ids(body, XML)
        assert "999990019" not in stripped.decode("utf-16" if encoding == "utf-16" else encoding)
        assert "<leerling></leerling>" in stripped.decode(
            "utf-16" if encoding == "utf-16" else encoding
        )
