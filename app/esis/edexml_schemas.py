"""The shipped EDEXml schemas: where they are, the records they describe, a pool of compiled
ones to validate with, and the `toevoegingen` block types they know.

The schemas are the official EDEXml ones with `schooljaar` checked by a pattern, plus this
project's guardian block (`app/esis/xsd/README.md`).
"""

from __future__ import annotations

import threading
from functools import cache
from pathlib import Path
from typing import Any, cast

from lxml import etree

from app.esis.xml import schema_parser

__all__ = [
    "CONTAINERS",
    "DEFAULT_VERSION",
    "GROUP_TAGS",
    "RECORDS",
    "ROOT",
    "SCHEMA_DIRS",
    "XSI_TYPE",
    "borrow",
    "give_back",
    "known_block_types",
    "schema_path",
]

XSD_DIR = Path(__file__).resolve().parent / "xsd"
SCHEMA_DIRS = {"2.1": "EDEXML-2.1", "2.0": "EDEXML-2.0"}
DEFAULT_VERSION = "2.1"
# Per version: the official schema plus the guardian block (see xsd/README.md).
ENTRY_SCHEMA = "EDEXML.verzorgers.xsd"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
BLOCK_BASE = "ToevoegingsBlokType"

ROOT = "EDEX"
CONTAINERS: dict[str, tuple[str, ...]] = {
    "vestigingen": ("vestiging",),
    "groepen": ("groep", "samengestelde_groep"),
    "leerlingen": ("leerling",),
    "leerkrachten": ("leerkracht",),
}
RECORDS = frozenset({"school", *(tag for tags in CONTAINERS.values() for tag in tags)})
GROUP_TAGS = ("groep", "samengestelde_groep")


def schema_path(version: str = DEFAULT_VERSION) -> Path:
    """The entry XSD of a version: the official schema plus the guardian block."""
    return XSD_DIR / SCHEMA_DIRS[version] / ENTRY_SCHEMA


_FRAGMENTS = """<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">
  <xs:include schemaLocation="{entry}"/>
  <xs:element name="school" type="SchoolType"/>
  <xs:element name="vestiging" type="VestigingType"/>
  <xs:element name="groep" type="GroepType"/>
  <xs:element name="samengestelde_groep" type="SamengesteldeGroepType"/>
  <xs:element name="leerling" type="LeerlingType"/>
  <xs:element name="leerkracht" type="LeerkrachtType"/>
</xs:schema>"""

# Compiled schemas, lent to one run at a time: an XMLSchema object keeps the error log of
# its last validation on itself, so two threads must not share one. The pool grows to the
# number of validations that ever ran at once (half a MB and a few ms per schema).
_pool_lock = threading.Lock()
_pool: dict[str, list[etree.XMLSchema]] = {version: [] for version in SCHEMA_DIRS}


# The identity constraints of `EDEX` (unique keys, references to groups and vestigingen).
XS = "{http://www.w3.org/2001/XMLSchema}"
IDENTITY = tuple(f"{XS}{name}" for name in ("unique", "key", "keyref"))
_STRUCTURE = "EDEXML.structuur.xsd"


def _build_schema(version: str) -> etree.XMLSchema:
    """The version's schema with the records as global elements, so that one record can be
    validated on its own; `EDEX` stays the global element for the skeleton.

    Compiled without `EDEX`'s identity constraints: the readers check those rules
    themselves, the same way whether a document is walked record by record (the skeleton
    lacks most records) or read whole (`edexml_quick`), and libxml2 spent half the time of
    a whole document's validation on them (issue 18). The structure schema itself is the
    document compiled, its constraints taken out, with what the entry schema adds (the
    guardian block) and the records' declarations (`_FRAGMENTS`) put in: no other file has
    to be handed to libxml2 changed (a resolver did that at first, and libxml2 did not
    always ask it)."""
    folder = XSD_DIR / SCHEMA_DIRS[version]
    document = etree.parse(str(folder / _STRUCTURE), schema_parser())
    for constraint in list(document.iter(*IDENTITY)):
        parent = constraint.getparent()
        if parent is not None:
            parent.remove(constraint)
    root = document.getroot()
    entry = etree.parse(str(folder / ENTRY_SCHEMA), schema_parser()).getroot()
    fragments = etree.fromstring(_FRAGMENTS.format(entry=ENTRY_SCHEMA))
    includes = [
        i for i in entry.iterchildren(f"{XS}include") if i.get("schemaLocation") != _STRUCTURE
    ]
    last = max((i for i, el in enumerate(root) if el.tag == f"{XS}include"), default=-1)
    for offset, include in enumerate(includes):
        root.insert(last + 1 + offset, include)
    root.extend(fragments.iterchildren(f"{XS}element"))
    return etree.XMLSchema(document)


def borrow(version: str) -> etree.XMLSchema:
    with _pool_lock:
        if _pool[version]:
            return _pool[version].pop()
    return _build_schema(version)


def give_back(version: str, schema: etree.XMLSchema) -> None:
    with _pool_lock:
        _pool[version].append(schema)


@cache
def known_block_types(version: str) -> frozenset[str]:
    """Names of the `ToevoegingsBlokType` extensions the shipped schemas define."""
    names: set[str] = set()
    files = [*sorted((XSD_DIR / SCHEMA_DIRS[version]).glob("*.xsd"))]
    files += sorted(XSD_DIR.glob("*.xsd"))
    for path in files:
        tree = etree.parse(str(path), schema_parser())
        found = tree.xpath(
            "//xs:complexType[xs:complexContent/xs:extension/@base=$base]/@name",
            namespaces={"xs": "http://www.w3.org/2001/XMLSchema"},
            base=BLOCK_BASE,
        )
        names.update(str(name) for name in cast(list[Any], found))
    return frozenset(names)
