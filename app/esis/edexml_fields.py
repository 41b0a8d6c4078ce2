"""What both EDEXml readers share: which element each field is read from, what a record of
each kind counts as, the result of a read, and the warnings a read gives.

The careful reader (`edexml.py`, the visitor of the validator's walk) and the quick one
(`edexml_quick.py`, for a valid document's tree) map the same elements onto the same fields
and warn in the same words, from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

from app.esis.edexml_nodes import Warnings
from app.esis.leniency import KeptRecord
from app.esis.schemas import EsisSnapshot, Kind

XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
GUARDIAN_BLOCK = "VerzorgersGegevensType"
GROUP_TAGS = ("groep", "samengestelde_groep")
# The records a bad value sets aside instead of refusing the document (leniency.py).
KEPT_ENTITY = {
    "groep": "group",
    "samengestelde_groep": "group",
    "leerling": "student",
    "leerkracht": "staff",
}
# The kind of records an element is (`Kind`'s value): what a document carries follows from
# what it holds.
RECORD_KIND = {
    "groep": Kind.GROUPS.value,
    "samengestelde_groep": Kind.GROUPS.value,
    "leerling": Kind.STUDENTS.value,
    "leerkracht": Kind.STAFF.value,
}
GUARDIANS_KIND = Kind.GUARDIANS.value
# The names after the last name (field, element), read by `_Reader.names`, and what else a
# record of each kind reads without a conversion (no value of them is refused by the reader).
NAME_FIELDS = (
    ("name_prefix", "voorvoegsel"),
    ("initials", "voorletters-1"),
    ("given_name", "roepnaam"),
    ("email", "emailadres"),
)
STUDENT_FIELDS = (*NAME_FIELDS, ("first_names", "voornamen"))
# A guardian's initials are `voorletters` (the guardian block's element), the rest as above.
GUARDIAN_FIELDS = (
    NAME_FIELDS[0],
    ("initials", "voorletters"),
    *NAME_FIELDS[2:],
    ("phone", "telefoonnummer"),
)
# Links of one guardian beyond which a reader keeps their students in a set (most guardians
# have one to three students; a crafted body could give one thousands).
MANY_STUDENTS = 16
# A staff member's roles: `rol` and the free text `rolomschrijving`, on the record itself and
# (EDEXml 2.1) on each of its group assignments.
ROLE_TAGS = ("rol", "rolomschrijving")


@dataclass(frozen=True)
class EdexmlRead:
    snapshot: EsisSnapshot
    warnings: list[str]
    # Records with a value that cannot be used: left as they are by the merge (leniency.py).
    kept: list[KeptRecord] = field(default_factory=list)


def block_type(blok: etree._Element) -> str:
    """A `toevoegingen/blok`'s type as the readers name it: its `xsi:type` without a prefix."""
    return (blok.get(XSI_TYPE) or "").strip().rpartition(":")[2][:64]


def warn_block(warnings: Warnings, kind: str, where: str) -> None:
    warnings.add(
        f"blok {kind}",
        f"toevoegingen blok of type '{kind}' skipped ({where})",
        f"toevoegingen blok of type '{kind}' skipped in {{n}} more elements",
    )


def warn_roepnaam(warnings: Warnings, where: str) -> None:
    warnings.add(
        "roepnaam",
        f"{where} has no achternaam; its roepnaam is the last name",
        "{n} more records have no achternaam; their roepnaam is the last name",
    )


def warn_left(warnings: Warnings, where: str) -> None:
    warnings.add(
        "left",
        f"{where} has left (uitstroomdatum); not included",
        "{n} more students have left (uitstroomdatum); not included",
    )


def warn_differs(warnings: Warnings, key: str, student_where: str) -> None:
    warnings.add(
        "guardian",
        f"verzorger key={key} in {student_where} differs from its first occurrence; the "
        "first is kept",
        "{n} more verzorgers differ from their first occurrence; the first is kept",
    )
