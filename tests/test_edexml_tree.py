"""An EDEXml document read from its tree (a UWLR answer's, `uwlr_soap._to_edex`) gives exactly
what the same document gives when it streams from its bytes: the same warnings, the same
records visited in the same order, the same problems with the same lines, the same snapshot.

`validate_edexml` walks a tree instead of writing it out and parsing it again (issue 18, the
pull scale); these tests hold the two ways equal, on the official samples, the corpus of real
answers, and the invalid and hostile documents of tests/test_edexml_validation.py that parse.
A pushed body of up to `WHOLE_MAX_BYTES` is parsed whole and walked too (issue 18, the XML
push), and must give what it gives streamed (`whole_max_bytes=0`), whether it parses or not.

One difference lies in the stream, not the walk (found by review): text after a record whose
end tag falls at the end of the parser's 32 kB read chunk is not parsed yet when the record
is removed, and is then reported as text of its container. Both refuse the document; the
walk, which has the whole tree, does not depend on where a chunk ends. These documents keep
away from that edge.
"""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from app.esis import uwlr_soap
from app.esis.edexml import read_edexml
from app.esis.edexml_validate import (
    MAX_DEPTH,
    MAX_UNIT_ELEMENTS,
    WHOLE_MAX_BYTES,
    Problem,
    validate_edexml,
)
from app.esis.errors import FormatError
from app.esis.uwlr_normalise import normalise_records, normalise_school
from app.esis.uwlr_soap import UwlrError, parse_answer
from app.esis.xml import blanks_droppable, safe_parser
from tests.test_edexml_validation import (
    GUARDIANS,
    HOSTILE,
    INVALID,
    SAMPLE_20,
    SAMPLE_20_VLA,
    SAMPLE_21,
    VENDOR_BLOCK,
    students,
    with_student,
)

TODAY = dt.date(2026, 12, 1)
# What libxml2's rule for blank text would take leading blanks off a value before
# (`app.esis.xml.blanks_droppable`): put after `<schooljaar>  ` of a body with no comment.
BEFORE_BLANKS = {
    "a comment": b"<!-- c -->",
    "CDATA": b"<![CDATA[]]>",
    "a PI": b"<?pi x?>",
    "a CR": b"\r\n",
    "a lone CR": b"\r",
}
CORPUS = Path(__file__).resolve().parent / "fixtures" / "uwlr-corpus"

DOCUMENTS: dict[str, bytes] = {
    "sample 2.1": SAMPLE_21,
    "sample 2.0": SAMPLE_20,
    "sample 2.0 vla": SAMPLE_20_VLA,
    "guardians": GUARDIANS,
    "invalid fixture": INVALID,
    "bad date": with_student(SAMPLE_21, "00001", b"2006-06-21", b"2014-13-01"),
    "bad relation": GUARDIANS.replace(b"<relatie>voogd</relatie>", b"<relatie>oom</relatie>"),
    "vendor blocks": with_student(
        SAMPLE_21, "00001", b"<mutatiedatum>", VENDOR_BLOCK + b"<mutatiedatum>"
    ),
    "blok without type": SAMPLE_21.replace(
        b'<blok xsi:type="OpmerkingGegevensType">', b"<blok>", 1
    ),
    "references": SAMPLE_21.replace(b'<groep key="GRP4B"/>', b'<groep key="sg1"/>')
    .replace(b'<vestiging key="VB"/>', b'<vestiging key="XX"/>')
    .replace(b'<leerling key="12345">', b'<leerling key="00001">'),
    "text after a record": SAMPLE_21.replace(b"</leerling>", b"</leerling>stray text", 1),
    "unexpected part": SAMPLE_21.replace(b"<groepen>", b"<extra><a/><b/></extra><groepen>", 1),
    "sixty problems": students(60, "<geslacht>4</geslacht>"),
    "two thousand": students(2000),
    # More elements in one part than a record may hold: each record is then counted alone.
    "six thousand": students(6000),
    "unknown xsdversie": SAMPLE_21.replace(
        b"<xsdversie>2.1</xsdversie>", b"<xsdversie>3.0</xsdversie>"
    ),
    "deep but allowed": students(
        1, "<toevoegingen>" + "<a>" * (MAX_DEPTH - 4) + "</a>" * (MAX_DEPTH - 4) + "</toevoegingen>"
    ),
    "just too deep": students(
        1, "<toevoegingen>" + "<a>" * (MAX_DEPTH - 3) + "</a>" * (MAX_DEPTH - 3) + "</toevoegingen>"
    ),
    "as many elements as allowed": students(1, "<x/>" * (MAX_UNIT_ELEMENTS - 2)),
    "one element too many": students(1, "<x/>" * (MAX_UNIT_ELEMENTS - 1)),
    "an unexpected part too large": students(1).replace(
        b"<groepen>", b"<extra>" + b"<x/>" * MAX_UNIT_ELEMENTS + b"</extra><groepen>"
    ),
    "the school too deep": students(1).replace(
        b"</school>", b"<x>" * MAX_DEPTH + b"</x>" * MAX_DEPTH + b"</school>"
    ),
    **{f"hostile: {name}": body for name, body in HOSTILE.items()},
    # Blanks before a comment, a CDATA section, a processing instruction or a carriage return
    # in a value: kept (libxml2 would drop them with the blank text between elements; see
    # below). In a body without comments: the samples have some, which keep every blank.
    **{
        f"blanks before {name}": students(2).replace(b"<schooljaar>", b"<schooljaar>  " + it, 1)
        for name, it in BEFORE_BLANKS.items()
    },
    # And bodies whose blank text between elements is dropped: CRLF line ends, a comment
    # before the root, blank text in every part, a leaf of blanks only.
    "CRLF": students(3).replace(b"\n", b"\r\n"),
    "a comment before the root": students(3).replace(b"<EDEX", b"<!-- export --><EDEX", 1),
    "blank text everywhere": students(3).replace(b"><", b">\n \t <"),
    "a leaf of blanks": students(3).replace(b"Test</achternaam>", b"   </achternaam>", 1),
}


def _tree(body: bytes) -> etree._Element | None:
    """The document's tree, as a UWLR answer's would be; None when it does not parse (the
    SOAP reader refuses such an answer before the EDEXml is read)."""
    if b"<!DOCTYPE" in body:
        return None
    try:
        return etree.fromstring(body, safe_parser())
    except (etree.XMLSyntaxError, ValueError):
        return None


class Recorder:
    """Notes every record it is given, with where and its line; sets guardians aside."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, int | None]] = []

    def item(self, kind: str, element: etree._Element, where: str) -> list[Problem]:
        line = element.sourceline if isinstance(element.sourceline, int) else None
        self.seen.append((kind, where, line))
        return []

    def set_aside(self, kind: str, element: etree._Element, problems: list[Problem]) -> bool:
        self.seen.append(("set aside " + kind, str(element.get("key")), len(problems)))
        return kind == "verzorger"

    def end(self) -> list[Problem]:
        self.seen.append(("end", "", None))
        return []


def _validated(document: bytes | etree._Element, whole_max_bytes: int = 0) -> tuple[Any, ...]:
    """`whole_max_bytes`: bytes stream unless asked otherwise, the way this file compares."""
    recorder = Recorder()
    try:
        warnings = validate_edexml(document, visitor=recorder, whole_max_bytes=whole_max_bytes)
    except FormatError as exc:
        return ("refused", exc.status, exc.detail, exc.extra, recorder.seen)
    return ("valid", warnings, recorder.seen)


def _read(document: bytes | etree._Element, whole_max_bytes: int = 0) -> tuple[Any, ...]:
    try:
        read = read_edexml(document, today=TODAY, whole_max_bytes=whole_max_bytes)
    except FormatError as exc:
        return ("refused", exc.status, exc.detail, exc.extra)
    return ("read", read.snapshot, read.warnings, read.kept)


PARSED = {name: body for name, body in DOCUMENTS.items() if _tree(body) is not None}


def test_the_documents_cover_what_the_walk_decides() -> None:
    """Each limit on both sides of its edge, records set aside, problems and the stop at 50."""
    outcomes = {name: _validated(body) for name, body in PARSED.items()}
    assert outcomes["sample 2.1"][0] == "valid"
    assert outcomes["two thousand"][0] == "valid"
    assert outcomes["six thousand"][0] == "valid"
    too_deep = f"elements are nested deeper than {MAX_DEPTH}"
    too_many = f"more than {MAX_UNIT_ELEMENTS} elements in one record"
    for name, refused_for in [
        ("deep but allowed", None),
        ("just too deep", too_deep),
        ("the school too deep", too_deep),
        ("as many elements as allowed", None),
        ("one element too many", too_many),
        ("an unexpected part too large", too_many),
    ]:
        detail = outcomes[name][2]
        assert (refused_for in detail) if refused_for else (too_deep not in detail), name
        assert refused_for or too_many not in detail, name
    assert any(s[0] == "set aside verzorger" for s in outcomes["bad relation"][-1])
    assert "(and 45 more)" in outcomes["sixty problems"][2]  # 5 shown, the stop at 50
    assert "hostile: too deep" in PARSED and "hostile: many unexpected elements" in PARSED


@pytest.mark.parametrize("name", list(PARSED))
def test_a_tree_validates_as_its_bytes_stream(name: str) -> None:
    body = PARSED[name]
    tree = _tree(body)
    assert tree is not None
    assert _validated(tree) == _validated(body)


@pytest.mark.parametrize("name", list(PARSED))
def test_a_tree_reads_as_its_bytes(name: str) -> None:
    body = PARSED[name]
    tree = _tree(body)
    assert tree is not None
    assert _read(tree) == _read(body)


@pytest.mark.parametrize("name", list(DOCUMENTS))
def test_a_body_parsed_whole_validates_as_it_streams(name: str) -> None:
    """What a push gets (the whole parse, for a body this small) against the stream; the
    documents that do not parse too (the DOCTYPEs, the broken ones): they stream. A hostile
    body larger than the bound is parsed whole here all the same."""
    body = DOCUMENTS[name]
    whole = max(len(body), WHOLE_MAX_BYTES)
    assert _validated(body, whole) == _validated(body)
    assert _read(body, whole) == _read(body)


@pytest.mark.parametrize("name", list(BEFORE_BLANKS))
def test_blank_text_is_dropped_only_where_no_value_can_lose_it(name: str) -> None:
    """Why such a body keeps its blank text: the schooljaar `  <!-- c -->2026-2027` streams
    as '  2026-2027', which the pattern refuses; with the blank text between elements
    dropped it would be '2026-2027' (or, before a CR, a line break and '2026-2027')."""
    body = DOCUMENTS[f"blanks before {name}"]
    assert not blanks_droppable(body)
    dropped = etree.fromstring(body, safe_parser(remove_blank_text=True))
    assert not (dropped.findtext("school/schooljaar") or "").startswith("  ")
    refused = _validated(body)
    assert refused[0] == "refused" and "schooljaar '  " in refused[2]
    assert _validated(body, WHOLE_MAX_BYTES) == refused


@pytest.mark.parametrize(
    "name", ["CRLF", "a comment before the root", "blank text everywhere", "a leaf of blanks"]
)
def test_blank_text_is_dropped_where_it_is_only_between_elements(name: str) -> None:
    body = DOCUMENTS[name]
    assert blanks_droppable(body)
    assert _read(body, WHOLE_MAX_BYTES) == _read(body)


def test_a_body_larger_than_the_whole_parse_streams() -> None:
    """Above the bound nothing is parsed whole: the stream holds the records of a read chunk
    at most, those handed on are gone (the whole parse has every record)."""
    body = students(2000)
    kept: list[int] = []

    class Counting(Recorder):
        def item(self, kind: str, element: etree._Element, where: str) -> list[Problem]:
            parent = element.getparent()
            if kind == "leerling" and parent is not None:
                kept.append(len(parent))
            return super().item(kind, element, where)

    validate_edexml(body, visitor=Counting(), whole_max_bytes=len(body) - 1)
    streamed = list(kept)
    kept.clear()
    validate_edexml(body, visitor=Counting(), whole_max_bytes=len(body))
    assert max(streamed) < 1000  # a chunk holds about 500 of these small records
    assert kept[0] == 2000  # the whole tree: every leerling is there when the first is read


def test_the_walk_removes_read_records_from_the_tree_but_the_first() -> None:
    """As the stream does: the skeleton that is validated at the end stays small."""
    tree = _tree(students(50))
    assert tree is not None
    validate_edexml(tree)
    leerlingen = tree.find("leerlingen")
    assert leerlingen is not None
    assert [el.get("key") for el in leerlingen] == ["00001"]


# --- UWLR answers ---------------------------------------------------------------------------


def _edex_of(answer: bytes) -> etree._Element:
    """What `parse_answer` hands to `read_edexml`: the answer's EDEXml, normalised."""
    body = uwlr_soap._soap_body(uwlr_soap.parse_xml(answer))
    antwoord = uwlr_soap._child(body, "leerlinggegevens_antwoord")
    assert antwoord is not None
    data = uwlr_soap._child(antwoord, "leerlinggegevens")
    assert data is not None
    school = uwlr_soap._child(data, "school")
    assert school is not None
    normalise_school(school, ("12AB", "00"))
    normalise_records(data)
    return uwlr_soap._to_edex(data)


ANSWERS = sorted(
    p.name
    for p in CORPUS.glob("*.xml")
    if b"geenwijzigingen" not in p.read_bytes() and b"geengegevens" not in p.read_bytes()
)


@pytest.mark.parametrize("name", ANSWERS)
def test_an_answer_reads_as_its_edexml_written_out_did(name: str) -> None:
    """The pull's path (the tree) against the one before (the tree written out and parsed
    again): the same snapshot, warnings and records set aside."""
    answer = (CORPUS / name).read_bytes()
    tree = _edex_of(answer)
    written = etree.tostring(copy.deepcopy(tree), encoding="utf-8", xml_declaration=True)
    assert _read(tree) == _read(written)
    read = parse_answer(answer, today=TODAY, requested=("12AB", "00"))
    assert ("read", read.snapshot, read.kept) == (
        _read(written)[0],
        _read(written)[1],
        _read(written)[3],
    )


def test_an_invalid_answer_names_the_line_of_the_answer_as_sent() -> None:
    """Lines of a problem are those of the SOAP message as ESIS sent it, not of an EDEXml
    document written out in between."""
    answer = (CORPUS / "uwlr22-eckid-no-guardians.xml").read_bytes()
    reference = answer.index(b'<groep key="G5A"/>')  # a student's group, not the group itself
    broken = answer[:reference] + b'<groep key="G9X"/>' + answer[reference + 18 :]
    with pytest.raises(UwlrError) as caught:
        parse_answer(broken, today=TODAY, requested=("12AB", "00"))
    line = broken[:reference].count(b"\n") + 1
    assert caught.value.kind == "invalid"
    assert f"line {line}, leerling key=" in caught.value.detail
    assert "groep 'G9X' is not in groepen" in caught.value.detail


def test_a_problem_of_the_whole_answer_names_the_line_of_its_leerlinggegevens() -> None:
    """The `EDEX` root is made, not read: it carries the line of the element it stands for."""
    answer = (CORPUS / "uwlr22-eckid-no-guardians.xml").read_bytes()
    end = answer.index(b"</groepen>") + len(b"</groepen>")
    broken = answer[:end] + b"stray text" + answer[end:]
    with pytest.raises(UwlrError) as caught:
        parse_answer(broken, today=TODAY, requested=("12AB", "00"))
    line = answer[: answer.index(b"<leerlinggegevens>")].count(b"\n") + 1
    assert f"line {line}, EDEX: EDEX has text" in caught.value.detail
