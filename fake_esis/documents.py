"""The documents the fake ESIS answers with: UWLR answer and Fault envelopes, and EDEXml
written from a snapshot by the service's own writer."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

from lxml import etree

from app.esis.edexml_write import write_edexml
from app.esis.schemas import EsisSnapshot
from app.esis.uwlr_soap import NS_LEERLINGGEGEVENS, NS_SOAP, NS_XSI
from app.esis.xml import safe_parser

AUTHOR = "fake ESIS"


def _default_ns(namespace: str) -> Any:
    """An nsmap with a default namespace (lxml-stubs do not allow the None key)."""
    return {None: namespace}


def soap_answer(edex_xml: bytes) -> bytes:
    """Wraps an EDEXml document (root `EDEX`) into a UWLR `leerlinggegevens_antwoord` envelope.

    Like a real answer, every element is in the leerlinggegevens namespace (the default
    namespace), so an unprefixed `xsi:type` resolves to that namespace too.
    """
    edex = etree.fromstring(edex_xml, safe_parser())
    if edex.tag != "EDEX":
        raise ValueError("not an EDEXml document (root EDEX)")
    ll = f"{{{NS_LEERLINGGEGEVENS}}}"
    envelope = etree.Element(f"{{{NS_SOAP}}}Envelope", nsmap={"s": NS_SOAP, "xsi": NS_XSI})
    body = etree.SubElement(envelope, f"{{{NS_SOAP}}}Body")
    antwoord = etree.SubElement(
        body, ll + "leerlinggegevens_antwoord", nsmap=_default_ns(NS_LEERLINGGEGEVENS)
    )
    data = etree.SubElement(antwoord, ll + "leerlinggegevens")
    for part in list(edex):
        if not isinstance(part.tag, str):
            continue
        for el in part.iter():
            if isinstance(el.tag, str) and etree.QName(el).namespace is None:
                el.tag = ll + el.tag
        data.append(part)
    etree.cleanup_namespaces(envelope)
    return etree.tostring(envelope, encoding="utf-8", xml_declaration=True)


def soap_fault(faultstring: str, faultcode: str = "s:Server") -> bytes:
    """A SOAP 1.1 Fault envelope."""
    envelope = etree.Element(f"{{{NS_SOAP}}}Envelope", nsmap={"s": NS_SOAP})
    fault = etree.SubElement(
        etree.SubElement(envelope, f"{{{NS_SOAP}}}Body"), f"{{{NS_SOAP}}}Fault"
    )
    etree.SubElement(fault, "faultcode").text = faultcode
    etree.SubElement(fault, "faultstring").text = faultstring
    return etree.tostring(envelope, encoding="utf-8", xml_declaration=True)


def edex_from_snapshot(snapshot: EsisSnapshot | Mapping[str, Any]) -> bytes:
    """An EDEXml 2.1 document (with this project's guardian block) holding `snapshot`.

    Written by the service's own writer (`write_edexml`), so the fake answers what the export
    would write: inactive staff are left out (absence means inactive), staff roles outside
    EDEXml's role codes become `rolomschrijving`. `read_edexml` maps the result back onto an
    equal snapshot.
    """
    snap = snapshot if isinstance(snapshot, EsisSnapshot) else EsisSnapshot.model_validate(snapshot)
    shape = snap.model_dump(mode="json")
    shape["staff"] = [member for member in shape["staff"] if member["active"]]
    out = io.BytesIO()
    write_edexml(shape, out, generated_at=snap.school.generated_at, author=AUTHOR)
    return out.getvalue()


def default_snapshot(brin: str, branch: str) -> dict[str, Any]:
    return {
        "school": {"brin": brin, "branch": branch, "school_year": "2026-2027"},
        "groups": [{"key": "G1", "name": "Groep 1", "year_level": 1}],
        "students": [{"key": "L0001", "last_name": "Voorbeeld", "group": "G1", "year_level": 1}],
    }
