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
IDENTITY = tuple(
    f"{{http://www.w3.org/2001/XMLSchema}}{name}" for name in ("unique", "key", "keyref")
)
_STRUCTURE = "EDEXML.structuur.xsd"


class _WithoutIdentity(etree.Resolver):
    """Hands libxml2 the structure schema without the identity constraints of `EDEX`."""

    # lxml calls it with a context too (lxml-stubs leave it out).
    def resolve(self, url: str, pubid: str | None, context: Any) -> Any:  # type: ignore[override]  # noqa: ARG002
        if not url.endswith(f"/{_STRUCTURE}"):
            return None
        tree = etree.parse(url.removeprefix("file://"), schema_parser())
        for constraint in list(tree.iter(*IDENTITY)):
            parent = constraint.getparent()
            if parent is not None:
                parent.remove(constraint)
        return self.resolve_string(etree.tostring(tree), context, base_url=url)


def _build_schema(version: str) -> etree.XMLSchema:
    """The version's schema with the records as global elements, so that one record can be
    validated on its own; `EDEX` stays the global element for the skeleton.

    Compiled without `EDEX`'s identity constraints: the readers check those rules
    themselves, the same way whether a document is walked record by record (the skeleton
    lacks most records) or read whole (`edexml_quick`), and libxml2 spent half the time of
    a whole document's validation on them (issue 18)."""
    base = XSD_DIR / SCHEMA_DIRS[version] / "esis-sync.records.xsd"
    parser = schema_parser()
    parser.resolvers.add(_WithoutIdentity())
    document = etree.fromstring(_FRAGMENTS.format(entry=ENTRY_SCHEMA), parser, base_url=str(base))
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
