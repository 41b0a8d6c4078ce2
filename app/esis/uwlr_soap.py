"""UWLR 2.2 messages: the SOAP request (`build_request`) and reading the answer (`parse_answer`).

Also what the client and the messages share: the namespaces, `UwlrConnection` (where and how
to reach one ESIS customer) and `UwlrError`. The transport (TLS, the address policy) is
`uwlr_transport.py`; fetching with retries is `uwlr.py` (`docs/esis-protocol.md`).

Error details name kinds, statuses, elements and keys; never names, e-mail addresses or
national ids (a fault string is scrubbed of e-mail addresses and long digit runs).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, cast

from lxml import etree

from app.esis.certs import ClientIdentity
from app.esis.edexml import EdexmlRead, read_edexml
from app.esis.errors import FormatError
from app.esis.uwlr_normalise import normalise_records, normalise_school
from app.esis.xml import doctype_line, has_doctype, safe_parser, syntax_message

NS_SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
NS_SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
NS_AUTORISATIE = "http://www.edustandaard.nl/leerresultaten/2/autorisatie"
NS_LEERLINGGEGEVENS = "http://www.edustandaard.nl/leerresultaten/2/leerlinggegevens"
NS_XSI = "http://www.w3.org/2001/XMLSchema-instance"
XSI_TYPE = f"{{{NS_XSI}}}type"
SOAP_ACTION = "HaalLeerlinggegevens"
XSD_VERSION = "2.2"
# The EDEXml parts of a leerlinggegevens answer, in the order EDEXml's XSD wants them.
EDEX_PARTS = ("school", "vestigingen", "groepen", "leerlingen", "leerkrachten")

UwlrErrorKind = Literal[
    "request",  # the request cannot be built (bad brin, branch, school year, URL)
    "certificate",  # the client certificate is expired or not yet valid
    "tls",  # TLS handshake or certificate verification failed (either side)
    "connect",  # no connection (refused, DNS, unreachable, no TLS there, no answer in time)
    "address",  # the host is not at a public address, and private ones are not allowed
    "timeout",  # connect/read/write/pool timeout
    "network",  # the connection broke while sending or receiving
    "http",  # an HTTP status other than 200, without a SOAP Fault
    "fault",  # a SOAP Fault
    "truncated",  # the answer stopped before its end
    "malformed",  # the answer is not the expected SOAP/XML (e.g. no leerlinggegevens)
    "too_large",  # the answer is larger than allowed
    "invalid",  # the leerlinggegevens are there but not valid EDEXml data
    "no_changes",  # geenwijzigingen: ESIS says nothing changed (an outcome, not a failure)
    "no_data",  # geengegevens: ESIS has no data for this request (never an empty school)
    "transport",  # any other transport failure
]

_BRIN = re.compile(r"^[0-9]{2}[A-Z]{2}$")
_BRANCH = re.compile(r"^[0-9]{2}$")
_SCHOOL_YEAR = re.compile(r"^[0-9]{4}-[0-9]{4}$")
_EMAIL = re.compile(r"[^\s@<>\"']+@[^\s@<>\"']+")
_DIGITS = re.compile(r"\d{6,}")


class UwlrError(Exception):
    """A failed UWLR fetch. `transient` failures may succeed when tried again later."""

    def __init__(
        self,
        kind: UwlrErrorKind,
        *,
        transient: bool,
        detail: str,
        attempts: int = 1,
        status: int | None = None,
        errors: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(detail)
        self.kind: UwlrErrorKind = kind
        self.transient = transient
        self.detail = detail
        self.attempts = attempts
        self.status = status
        self.errors = errors or []

    def __str__(self) -> str:
        tries = f" (after {self.attempts} attempts)" if self.attempts > 1 else ""
        return f"UWLR {self.kind}: {self.detail}{tries}"

    def __repr__(self) -> str:
        return (
            f"UwlrError(kind={self.kind!r}, transient={self.transient}, "
            f"attempts={self.attempts}, status={self.status}, detail={self.detail!r})"
        )


@dataclass
class UwlrConnection:
    """Where and how to reach one ESIS customer's UWLR service."""

    url: str  # https://<customer>.rovictonline.nl/uwlr2.2.svc
    identity: ClientIdentity
    ca_pem: bytes | None  # trust store for the server certificate; None = system default
    autorisatiesleutel: str
    klantcode: str
    klantnaam: str
    soap_action: str = SOAP_ACTION
    # The operator's policy: whether the URL may lead to a loopback, private, link-local or
    # other non-public address (tests, a fake ESIS next to the service).
    allow_private: bool = False

    def __repr__(self) -> str:  # the autorisatiesleutel is a secret
        return (
            f"UwlrConnection(url={self.url!r}, subject={self.identity.subject!r}, "
            f"klantcode={self.klantcode!r})"
        )


# --- request -------------------------------------------------------------------------------


def _default_ns(namespace: str) -> Any:
    """An nsmap with a default namespace (lxml-stubs do not allow the None key)."""
    return {None: namespace}


def build_request(
    *, conn: UwlrConnection, brin: str, branch: str, school_year: str | None
) -> bytes:
    """The SOAP 1.1 envelope of a `leerlinggegevens_verzoek` (empty schooljaar = current)."""
    brin = brin.strip().upper()
    if not _BRIN.match(brin):
        raise UwlrError("request", transient=False, detail="brin must be 2 digits + 2 letters")
    if not _BRANCH.match(branch):
        raise UwlrError("request", transient=False, detail="dependancecode must be 2 digits")
    if school_year is not None and not _SCHOOL_YEAR.match(school_year):
        raise UwlrError("request", transient=False, detail="schooljaar must be YYYY-YYYY")
    s, a, ll = (f"{{{ns}}}" for ns in (NS_SOAP, NS_AUTORISATIE, NS_LEERLINGGEGEVENS))
    try:
        envelope = etree.Element(s + "Envelope", nsmap={"s": NS_SOAP})
        header = etree.SubElement(envelope, s + "Header")
        autorisatie = etree.SubElement(header, a + "autorisatie", nsmap=_default_ns(NS_AUTORISATIE))
        for name in ("autorisatiesleutel", "klantcode", "klantnaam"):
            etree.SubElement(autorisatie, a + name).text = getattr(conn, name)
        body = etree.SubElement(envelope, s + "Body")
        verzoek = etree.SubElement(
            body, ll + "leerlinggegevens_verzoek", nsmap=_default_ns(NS_LEERLINGGEGEVENS)
        )
        etree.SubElement(verzoek, ll + "schooljaar").text = school_year or ""
        etree.SubElement(verzoek, ll + "brincode").text = brin
        etree.SubElement(verzoek, ll + "dependancecode").text = branch
        etree.SubElement(verzoek, ll + "xsdversie").text = XSD_VERSION
    except ValueError:  # lxml refuses control characters and NUL bytes in text
        raise UwlrError(
            "request", transient=False, detail="autorisatie values contain invalid characters"
        ) from None
    return etree.tostring(envelope, encoding="utf-8", xml_declaration=True)


# --- answer --------------------------------------------------------------------------------


def _malformed(detail: str, *, transient: bool = True) -> UwlrError:
    return UwlrError("malformed", transient=transient, detail=detail)


def parse_xml(body: bytes) -> etree._Element:
    """Parses a SOAP message safely: no DOCTYPE, no entities, no network, no huge trees.

    A body that ends early is `truncated`, other syntax errors `malformed`; both transient.
    """
    if doctype_line(body) is not None:
        raise _malformed("the answer has a DOCTYPE, which is not allowed", transient=False)
    try:
        root = etree.fromstring(body, safe_parser())
    except etree.XMLSyntaxError as exc:
        message = syntax_message(exc)[:160]
        if _ends_early(body, exc):
            raise UwlrError(
                "truncated", transient=True, detail=f"the answer ends early: {message}"
            ) from None
        raise _malformed(f"the answer is not well-formed XML: {message}") from None
    if has_doctype(root):
        raise _malformed("the answer has a DOCTYPE, which is not allowed", transient=False)
    return root


def _ends_early(body: bytes, exc: etree.XMLSyntaxError) -> bool:
    if not body.strip() or getattr(exc, "code", None) == 77:  # empty; XML_ERR_TAG_NOT_FINISHED
        return True
    line, column = exc.position
    lines = body.split(b"\n")
    return line >= len(lines) and column >= len(lines[-1])


def _local(el: etree._Element) -> str:
    tag = el.tag
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def _strings(items: Iterable[str | bytes]) -> Iterator[str]:
    return (item for item in items if isinstance(item, str))


def _child(el: etree._Element, name: str) -> etree._Element | None:
    return next((c for c in el if _local(c) == name), None)


def _scrub(text: str, limit: int = 200) -> str:
    """A fault text with e-mail addresses and long numbers (BSN, phone) removed."""
    text = _DIGITS.sub("[number]", _EMAIL.sub("[e-mail]", " ".join(text.split())))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _fault(body: etree._Element) -> str | None:
    """`faultcode: faultstring` of a SOAP 1.1 or 1.2 Fault in `body`, scrubbed; else None."""
    fault = _child(body, "Fault")
    if fault is None:
        return None
    code = _child(fault, "faultcode")
    text = _child(fault, "faultstring")
    if code is None and text is None:  # SOAP 1.2: Code/Value, Reason/Text
        code_el = _child(fault, "Code")
        reason = _child(fault, "Reason")
        code = _child(code_el, "Value") if code_el is not None else None
        text = _child(reason, "Text") if reason is not None else None
    code_text = " ".join((code.text or "").split()) if code is not None else ""
    fault_text = "".join(_strings(text.itertext())) if text is not None else ""
    detail = _scrub(fault_text) or "no faultstring"
    return f"{_scrub(code_text, 64)}: {detail}" if code_text else detail


def _soap_body(root: etree._Element) -> etree._Element:
    if _local(root) != "Envelope" or etree.QName(root).namespace not in (NS_SOAP, NS_SOAP12):
        raise _malformed("the answer is not a SOAP envelope")
    body = _child(root, "Body")
    if body is None:
        raise _malformed("the SOAP envelope has no Body")
    return body


def fault_of(body: bytes) -> str | None:
    """The scrubbed fault text when `body` is a SOAP Fault; None for anything else."""
    try:
        return _fault(_soap_body(parse_xml(body)))
    except UwlrError:
        return None


def _resolve_type(el: etree._Element, extra_ns: dict[str, str]) -> None:
    """Keeps `xsi:type` meaningful once element namespaces are stripped.

    A type in the leerlinggegevens namespace (or none) becomes unprefixed, as in EDEXml; a
    type in another namespace keeps its prefix, declared again on the EDEX root.
    """
    value = el.get(XSI_TYPE)
    if value is None:
        return
    prefix, _, name = value.strip().rpartition(":")
    namespace = el.nsmap.get(prefix or None)
    if not prefix or namespace in (None, NS_LEERLINGGEGEVENS):
        el.set(XSI_TYPE, name)
        return
    assert namespace is not None
    while extra_ns.get(prefix, namespace) != namespace or prefix == "xsi":
        prefix += "x"
    extra_ns[prefix] = namespace
    el.set(XSI_TYPE, f"{prefix}:{name}")


_TYPED = "descendant-or-self::*[@xsi:type]"


def _to_edex(data: etree._Element) -> etree._Element:
    """The EDEXml document (root `EDEX`, no namespace) inside a `leerlinggegevens` element,
    as a tree: `read_edexml` walks it as it is (writing it out and parsing it again was a
    fifth of reading an answer)."""
    parts = {name: [c for c in data if _local(c) == name] for name in EDEX_PARTS}
    extra_ns: dict[str, str] = {}
    for name in EDEX_PARTS:
        for part in parts[name]:
            # Only the elements with an xsi:type, found in C, in document order.
            typed = part.xpath(_TYPED, namespaces={"xsi": NS_XSI})
            for el in cast(list[etree._Element], typed):
                _resolve_type(el, extra_ns)
    for name in EDEX_PARTS:
        for part in parts[name]:
            for el in part.iter():
                tag = el.tag
                # `{namespace}local` becomes `local`; a tag without a namespace is left as it is.
                if isinstance(tag, str) and tag.startswith("{"):
                    el.tag = tag.rpartition("}")[2]
    # Renamed first, then moved: an element without a namespace moves to the new document
    # without a namespace to look up again (a third of the time of this function, before).
    edex = etree.Element("EDEX", nsmap={"xsi": NS_XSI, **extra_ns})
    # Made here, it has no line of its own: a problem of the document as a whole names the
    # line of the `leerlinggegevens` it stands for.
    edex.sourceline = data.sourceline
    for name in EDEX_PARTS:
        for part in parts[name]:
            edex.append(part)  # moves the element; no copy of a large answer
    etree.cleanup_namespaces(
        edex, top_nsmap={"xsi": NS_XSI, **extra_ns}, keep_ns_prefixes=["xsi", *extra_ns]
    )
    return edex


def parse_answer(
    body: bytes, *, today: dt.date | None = None, requested: tuple[str, str] | None = None
) -> EdexmlRead:
    """Reads a UWLR `leerlinggegevens_antwoord`; a Fault or incomplete answer is a UwlrError.

    `today` is handed to `read_edexml` (it decides whether an uitstroomdatum has passed);
    `requested` is the (brin, branch) the answer was asked for. `geenwijzigingen` and
    `geengegevens` are UwlrErrors of their own kinds (`no_changes`, `no_data`), not retried.
    """
    soap_body = _soap_body(parse_xml(body))
    fault = _fault(soap_body)
    if fault is not None:
        raise UwlrError("fault", transient=False, detail=f"SOAP Fault {fault}")
    antwoord = _child(soap_body, "leerlinggegevens_antwoord")
    if antwoord is None:
        raise _malformed("the SOAP Body has no leerlinggegevens_antwoord")
    data = _child(antwoord, "leerlinggegevens")
    if data is None:
        if _child(antwoord, "geenwijzigingen") is not None:
            raise UwlrError(
                "no_changes", transient=False, detail="ESIS answered geenwijzigingen: no changes"
            )
        if _child(antwoord, "geengegevens") is not None:
            raise UwlrError(
                "no_data",
                transient=False,
                detail="ESIS answered geengegevens: it has no data for this school (check the "
                "BRIN and dependance code, and that the school's groups are available for "
                "couplings in ESIS)",
            )
        raise _malformed("the leerlinggegevens_antwoord has no leerlinggegevens")
    school = _child(data, "school")
    if school is None:
        raise _malformed("the leerlinggegevens have no school")
    normalise_school(school, requested)
    notes = normalise_records(data)
    try:
        read = read_edexml(_to_edex(data), today=today)
    except FormatError as exc:
        errors = exc.extra.get("errors")
        raise UwlrError(
            "invalid",
            transient=False,
            detail=f"the leerlinggegevens are not valid EDEXml: {exc.detail}",
            errors=errors if isinstance(errors, list) else None,
        ) from None
    return EdexmlRead(snapshot=read.snapshot, warnings=[*notes, *read.warnings], kept=read.kept)
