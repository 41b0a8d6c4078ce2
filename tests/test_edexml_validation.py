"""EDEXml validation against the shipped XSDs: samples, messages, vendor blocks, hostile input."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest
from lxml import etree

from app.esis.edexml_validate import (
    MAX_DEPTH,
    Problem,
    schema_path,
    validate_edexml,
)
from app.esis.errors import FormatError
from app.esis.xml import PARSER_OPTIONS, safe_parser

OFFICIAL = Path(__file__).resolve().parent / "fixtures" / "edexml" / "official"
SAMPLE_21 = (OFFICIAL / "EDEXML-2.1" / "EDEXML.Voorbeeld.2.1.xml").read_bytes()
SAMPLE_20 = (OFFICIAL / "EDEXML-2.0" / "EDEXML.Voorbeeld.2.0.xml").read_bytes()
SAMPLE_20_VLA = (OFFICIAL / "EDEXML-2.0" / "EDEXML.Voorbeeld.2.0-Vla.xml").read_bytes()
INVALID = (OFFICIAL / "invalid" / "EDEXML.invalid_1.xml").read_bytes()
GUARDIANS = (Path(__file__).parent / "fixtures" / "edexml" / "guardians-2.1.xml").read_bytes()
XSD_DIR = Path(__file__).resolve().parents[1] / "app" / "esis" / "xsd"

VENDOR_BLOCK = (
    b'<toevoegingen><blok xsi:type="AcmeGegevensType"><code>acme</code>'
    b"<kleur>blauw</kleur></blok></toevoegingen>"
)


def refused(body: bytes) -> FormatError:
    with pytest.raises(FormatError) as caught:
        validate_edexml(body)
    return caught.value


def line_of(document: bytes, marker: bytes) -> int:
    return document[: document.index(marker)].count(b"\n") + 1


def with_student(body: bytes, key: str, old: bytes, new: bytes) -> bytes:
    """`body` with `old` replaced by `new` inside the leerling with `key` only."""
    start = body.index(f'<leerling key="{key}"'.encode())
    end = body.index(b"</leerling>", start)
    return body[:start] + body[start:end].replace(old, new, 1) + body[end:]


def students(count: int, inner: str = "", *, school_year: str = "2026-2027") -> bytes:
    rows = "\n".join(
        f'<leerling key="{n:05d}"><achternaam>Test</achternaam>{inner}</leerling>'
        for n in range(1, count + 1)
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<EDEX xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<school><schooljaar>{school_year}</schooljaar><brincode>12AB</brincode></school>
<groepen><groep key="G1"><naam>Groep 1</naam><jaargroep>1</jaargroep></groep></groepen>
<leerlingen>
{rows}
</leerlingen>
</EDEX>
""".encode()


# --- the shipped schemas ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body", [SAMPLE_21, SAMPLE_20, SAMPLE_20_VLA], ids=["2.1", "2.0", "2.0-vla"]
)
def test_official_samples_validate_without_warnings(body: bytes) -> None:
    assert validate_edexml(body) == []


def test_the_shipped_xsds_are_the_official_ones_but_for_schooljaar() -> None:
    """README.md: one deliberate change per version, in EDEXML.types.variabel.xsd."""
    for version in ("2.0", "2.1"):
        official = OFFICIAL / f"EDEXML-{version}"
        shipped = XSD_DIR / f"EDEXML-{version}"
        for name in ("EDEXML.structuur.xsd", "EDEXML.elementen.xsd", "EDEXML.types.vast.xsd"):
            assert (shipped / name).read_bytes() == (official / name).read_bytes()
        before = (official / "EDEXML.types.variabel.xsd").read_bytes()
        after = (shipped / "EDEXML.types.variabel.xsd").read_bytes()
        assert b'<xs:enumeration value="2024-2025"/>' in before
        assert b'<xs:enumeration value="2024-2025"/>' not in after
        assert b'<xs:pattern value="[0-9]{4}-[0-9]{4}"/>' in after
        # Without the school year type (and the comment on it), the files are the same.
        school_year = re.compile(
            rb"(\t<!-- esis-sync: .*?-->\r\n)?\t<xs:simpleType name=\"EDEXSchooljaarType\">"
            rb".*?</xs:simpleType>\r\n",
            re.S,
        )
        assert school_year.sub(b"", after) == school_year.sub(b"", before)


def test_the_entry_schema_validates_the_guardian_fixture_once_the_vendor_block_is_gone() -> None:
    """The shipped XSD on its own (what other software would use) knows the guardian block."""
    schema = etree.XMLSchema(etree.parse(str(schema_path("2.1"))))
    document = etree.fromstring(GUARDIANS)
    assert not schema.validate(document)  # LeverancierXGegevensType is in no schema
    xsi_type = "{http://www.w3.org/2001/XMLSchema-instance}type"
    for blok in list(document.iter("blok")):
        parent = blok.getparent()
        if parent is not None and blok.get(xsi_type) != "VerzorgersGegevensType":
            parent.remove(blok)
    assert schema.validate(document), schema.error_log


def test_school_year_is_checked_by_a_pattern_not_the_enumeration() -> None:
    assert validate_edexml(SAMPLE_21.replace(b"2014-2015", b"2031-2032")) == []
    body = SAMPLE_21.replace(b"2014-2015", b"2014/15")
    assert refused(body).detail == (
        f"line {line_of(body, b'<schooljaar>')}, school: "
        "schooljaar '2014/15' does not match the pattern [0-9]{4}-[0-9]{4}"
    )


def test_xsdversie_2_0_is_validated_against_the_2_0_schema() -> None:
    body = SAMPLE_21.replace(b"<xsdversie>2.1</xsdversie>", b"<xsdversie>2.0</xsdversie>")
    messages = [e["message"] for e in refused(body).extra["errors"]]
    assert "leerling @eckid is not allowed" in messages  # eckid came with 2.1
    assert "rol 'TAL' is not a rol code" in messages  # so did the role TAL


def test_unknown_xsdversie_is_validated_as_2_1_with_a_warning() -> None:
    body = SAMPLE_21.replace(b"<xsdversie>2.1</xsdversie>", b"<xsdversie>9.9</xsdversie>")
    assert validate_edexml(body) == [
        "xsdversie '9.9' is not 2.0 or 2.1; the file was validated as EDEXml 2.1"
    ]


# --- messages ---------------------------------------------------------------------------------


def test_the_invalid_fixture_is_a_422_pointing_at_line_and_element() -> None:
    error = refused(INVALID)
    assert error.status == 422
    assert error.detail == "line 3, EDEX: school_incorrect_element is not expected here " + (
        "(expected: school)"
    )
    assert error.extra["errors"] == [
        {
            "field": "line 3, EDEX",
            "message": "school_incorrect_element is not expected here (expected: school)",
        }
    ]


def test_wrong_date_names_line_record_and_value() -> None:
    body = with_student(SAMPLE_21, "00001", b"2006-06-21", b"2014-13-01")
    line = line_of(body, b"2014-13-01")
    assert refused(body).extra["errors"] == [
        {
            "field": f"line {line}, leerling key=00001",
            "message": "geboortedatum '2014-13-01' is not a date",
        }
    ]


def test_an_error_in_a_later_record_is_found_and_named() -> None:
    body = students(300).replace(
        b'<leerling key="00250"><achternaam>Test</achternaam>',
        b'<leerling key="00250"><achternaam>Test</achternaam><geslacht>5</geslacht>',
    )
    assert refused(body).detail == (
        f"line {line_of(body, b'<geslacht>5')}, leerling key=00250: "
        "geslacht '5' is not one of 0, 1, 2, 9"
    )


def test_names_e_mail_addresses_and_national_ids_are_never_quoted() -> None:
    long_name = b"Pietersen" * 30
    body = with_student(SAMPLE_21, "00002", b"<achternaam>Assati", b"<achternaam>" + long_name)
    body = body.replace(b"<bsn>133456785</bsn>", b"<bsn>13345678</bsn>")
    body = with_student(
        body, "00001", b"<roepnaam>Wimpie</roepnaam>", b"<roepnaam>" + b"W" * 70 + b"</roepnaam>"
    )
    error = refused(body)
    messages = [e["message"] for e in error.extra["errors"]]
    assert "achternaam is longer than 200 characters" in messages
    assert "roepnaam is longer than 64 characters" in messages
    assert "bsn does not match the pattern \\p{Nd}{9}" in messages
    text = str(error.extra) + error.detail
    for secret in ("Pietersen", "13345678", "WWWW"):
        assert secret not in text


def test_keys_and_references_are_checked_like_the_schema_identity_constraints() -> None:
    body = SAMPLE_21.replace(b'<groep key="GRP4B"/>', b'<groep key="sg1"/>')
    body = body.replace(b'<vestiging key="VB"/>', b'<vestiging key="XX"/>')
    body = body.replace(b'<leerling key="12345">', b'<leerling key="00001">')
    errors = refused(body).extra["errors"]
    first = line_of(body, b'<leerling key="00001"')
    assert [(e["field"].split(", ")[1], e["message"]) for e in errors] == [
        ("leerling key=00001", "groep 'sg1' is a samengestelde_groep, not a groep"),
        ("leerling key=00002", "vestiging 'XX' is not in vestigingen"),
        ("leerling key=00001", f"duplicate key (first at line {first})"),
    ]


def test_a_teacher_of_an_unknown_group_is_refused() -> None:
    body = SAMPLE_21.replace(
        b'<samengestelde_groep key="sg3"/>', b'<samengestelde_groep key="sg9"/>'
    )
    assert refused(body).detail.endswith(
        "leerkracht key=LK2: samengestelde_groep 'sg9' is not in groepen"
    )


def test_sections_in_the_wrong_order_are_refused() -> None:
    start, end = SAMPLE_21.index(b"\t<groepen>"), SAMPLE_21.index(b"\t<leerlingen>")
    groups = SAMPLE_21[start:end]
    body = SAMPLE_21[:start] + SAMPLE_21[end:].replace(
        b"\t<leerkrachten>", groups + b"\t<leerkrachten>"
    )
    assert "groepen is not expected here" in refused(body).detail


def test_at_most_50_problems_are_reported() -> None:
    error = refused(students(80, "<geslacht>4</geslacht>"))
    assert len(error.extra["errors"]) == 50
    assert error.detail.endswith("(and 45 more)")


# --- toevoegingen -----------------------------------------------------------------------------


def test_unknown_vendor_blocks_are_skipped_with_one_warning_per_type() -> None:
    body = SAMPLE_21
    for key in ("00001", "00002"):
        body = with_student(body, key, b"<mutatiedatum>", VENDOR_BLOCK + b"<mutatiedatum>")
    assert validate_edexml(body) == [
        "toevoegingen blok of type 'AcmeGegevensType' skipped 2 times (first in leerling key=00001)"
    ]
    schema = etree.XMLSchema(etree.parse(str(schema_path("2.1"))))
    assert not schema.validate(etree.fromstring(body))  # the skip is what makes it valid


def test_many_unknown_block_types_make_a_bounded_report() -> None:
    blocks = b"".join(b'<blok xsi:type="Vendor%dType"><code>x</code></blok>' % n for n in range(25))
    extra = b"<toevoegingen>" + blocks + b"</toevoegingen><mutatiedatum>"
    warnings = validate_edexml(with_student(SAMPLE_21, "00001", b"<mutatiedatum>", extra))
    assert len(warnings) == 21
    assert warnings[0] == "toevoegingen blok of type 'Vendor0Type' skipped (leerling key=00001)"
    assert warnings[-1] == "5 more toevoegingen blokken of other unknown types skipped"


def test_a_vendor_block_beside_known_blocks_leaves_them_validated() -> None:
    body = SAMPLE_21.replace(
        b"<code>Opmerking Y</code>\n\t\t\t\t\t<opmerking/>",
        b"<code>Opmerking Y</code>\n\t\t\t\t\t<opmerking/><extra/>",
    )
    body = body.replace(b'<blok xsi:type="OpmerkingGegevensType">', b'<blok xsi:type="v:Acme">', 1)
    error = refused(body)
    assert error.extra["errors"] == [
        {
            "field": f"line {line_of(body, b'<extra/>')}, leerling key=12345",
            "message": "extra is not expected here",
        }
    ]


def test_guardian_blocks_validate_and_a_bad_relation_is_refused() -> None:
    assert validate_edexml(GUARDIANS) == [
        "toevoegingen blok of type 'LeverancierXGegevensType' skipped (leerling key=00001)"
    ]
    body = GUARDIANS.replace(b"<relatie>voogd</relatie>", b"<relatie>oom</relatie>")
    assert refused(body).detail == (
        f"line {line_of(body, b'<relatie>oom')}, verzorger key=V0004: "
        "relatie 'oom' is not one of vader, moeder, verzorger, voogd, overig"
    )


def test_a_blok_without_xsi_type_is_refused() -> None:
    body = SAMPLE_21.replace(b'<blok xsi:type="OpmerkingGegevensType">', b"<blok>", 1)
    assert (
        refused(body).detail
        == f"line {line_of(body, b'<blok>')}, groep key=003: blok has no xsi:type"
    )


# --- streaming --------------------------------------------------------------------------------


class Recorder:
    """A visitor that notes what it is given and how big the tree is at that moment."""

    def __init__(self) -> None:
        self.kinds: list[str] = []
        self.before: list[str | None] = []  # the key of the record before each one in the tree
        self.ended = False

    def item(self, kind: str, element: etree._Element, where: str) -> list[Problem]:
        self.kinds.append(kind)
        previous = element.getprevious()
        self.before.append(None if previous is None else previous.get("key"))
        line = element.sourceline if isinstance(element.sourceline, int) else None
        return [Problem(line, where, "noted")] if where == "leerling key=00003" else []

    def set_aside(self, kind: str, element: etree._Element, problems: list[Problem]) -> bool:
        return False  # the validator's own problems stay problems here

    def end(self) -> list[Problem]:
        self.ended = True
        return []


def test_records_are_visited_in_order_and_dropped_after_the_first() -> None:
    recorder = Recorder()
    with pytest.raises(FormatError) as caught:
        validate_edexml(students(2000), visitor=recorder)
    assert recorder.kinds == ["school", "groep"] + ["leerling"] * 2000
    # Every record before the current one is gone, but the first (kept for the skeleton); the
    # parser may have read a chunk ahead.
    assert set(recorder.before[3:]) == {"00001"}
    assert recorder.ended
    assert caught.value.extra["errors"] == [
        {"field": "line 8, leerling key=00003", "message": "noted"}
    ]


def test_concurrent_validations_keep_their_own_errors() -> None:
    results: dict[int, str] = {}

    def check(n: int) -> None:
        body = students(50).replace(b'key="00010">', f'key="00010"><x{n}/>'.encode())
        try:
            validate_edexml(body)
        except FormatError as exc:
            results[n] = exc.detail

    threads = [threading.Thread(target=check, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == list(range(6))
    for n, detail in results.items():
        assert f"x{n} is not expected here" in detail


# --- hostile and broken input -----------------------------------------------------------------

ENTITIES = "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)).replace(
    "&lol0;", "lol"
)
HOSTILE = {
    "xxe": b'<?xml version="1.0"?>\n<!DOCTYPE EDEX [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
    b"<EDEX><school><brincode>&x;</brincode></school></EDEX>",
    "external dtd": b'<?xml version="1.0"?>\n<!DOCTYPE EDEX SYSTEM "http://example.com/e.dtd">\n'
    b"<EDEX/>",
    "billion laughs": (
        f'<?xml version="1.0"?>\n<!DOCTYPE EDEX [{ENTITIES}]>\n<EDEX>&lol9;</EDEX>'
    ).encode(),
    "billion laughs utf-16": (
        f'<?xml version="1.0" encoding="UTF-16"?>\n<!DOCTYPE EDEX [{ENTITIES}]>\n'
        "<EDEX>&lol9;</EDEX>"
    ).encode("utf-16"),
    "truncated": SAMPLE_21[: len(SAMPLE_21) // 2],
    "wrong root": b'<?xml version="1.0"?>\n<leerlingen><leerling key="1"/></leerlingen>',
    "namespaced root": b'<EDEX xmlns="urn:example:edex"/>',
    "not xml": b"PK\x03\x04\x14\x00\x06\x00 this is a zip file",
    "json": b'{"school": {"brin": "12AB"}}',
    "empty": b"",
    "utf-16 declared on utf-8 bytes": SAMPLE_21.replace(b'encoding="UTF-8"', b'encoding="UTF-16"'),
    "unknown encoding": SAMPLE_21.replace(b'encoding="UTF-8"', b'encoding="x-klingon"'),
    "ebcdic": SAMPLE_21.replace(b'encoding="UTF-8"', b'encoding="cp037"'),
    "latin-1 bytes declared utf-8": SAMPLE_21.replace(b"Isma\xc3\xabl", b"Isma\xebl"),
    "too deep": students(1, "<toevoegingen>" + "<a>" * 100 + "</a>" * 100 + "</toevoegingen>"),
    "too many elements in a record": students(1, "<x/>" * 10_001),
    "huge text node": students(1, f"<roepnaam>{'a' * 11_000_000}</roepnaam>"),
    "many unexpected elements": students(1).replace(b"<groepen>", b"<x/>" * 5000 + b"<groepen>"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_or_broken_input_is_a_4xx_problem_quickly(name: str) -> None:
    started = time.monotonic()
    with pytest.raises(FormatError) as caught:
        validate_edexml(HOSTILE[name])
    assert time.monotonic() - started < 2.0
    assert 400 <= caught.value.status < 500
    assert caught.value.detail
    assert "root:" not in str(caught.value.extra)  # /etc/passwd was never read


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("xxe", "line 2, document: DOCTYPE is not allowed"),
        ("billion laughs utf-16", "DOCTYPE is not allowed"),
        ("wrong root", "line 2, document: root element is not EDEX: 'leerlingen'"),
        ("utf-16 declared on utf-8 bytes", "the declared encoding 'UTF-16' does not match"),
        ("unknown encoding", "encoding 'x-klingon' is not supported; use UTF-8"),
        ("latin-1 bytes declared utf-8", "malformed XML"),
        ("truncated", "malformed XML"),
        ("too deep", f"elements are nested deeper than {MAX_DEPTH}"),
        ("too many elements in a record", "more than 10000 elements in one record"),
        ("many unexpected elements", "more than 50 unexpected elements"),
        ("not xml", "line 1, document: malformed XML: Start tag expected"),
    ],
)
def test_hostile_or_broken_input_says_why(name: str, expected: str) -> None:
    assert expected in refused(HOSTILE[name]).detail


def test_utf_16_and_latin_1_documents_are_read() -> None:
    text = SAMPLE_21.decode()
    assert validate_edexml(text.replace('"UTF-8"', '"UTF-16"').encode("utf-16")) == []
    assert validate_edexml(text.replace('"UTF-8"', '"ISO-8859-1"').encode("latin-1")) == []


def test_the_parser_settings_keep_libxml2s_entity_amplification_limit() -> None:
    """A DOCTYPE never reaches the parser; should one, its entity expansion is still bounded."""
    parser = safe_parser()
    with pytest.raises(etree.XMLSyntaxError, match="amplification"):
        etree.fromstring(HOSTILE["billion laughs"], parser)
    assert PARSER_OPTIONS["huge_tree"] is False
    assert PARSER_OPTIONS["resolve_entities"] is False
