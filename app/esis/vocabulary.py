"""The EDEXml code lists this project reads and writes, in one table.

The reader (`edexml.py`), the writer (`edexml_write.py`) and the fake ESIS all translate
between EDEXml's codes and the snapshot's words through these tables, so a code added here is
read and written alike. The codes are those of EDEXML.types.vast.xsd (gender, year level,
staff role) and of this project's guardian block (relation).
"""

from __future__ import annotations

from app.esis.schemas import Gender, Relation

__all__ = [
    "GENDERS",
    "GENDER_CODES",
    "NON_NUMERIC_YEAR_LEVELS",
    "NO_YEAR_LEVEL",
    "RELATIONS",
    "RELATION_CODES",
    "ROLES",
    "YEAR_LEVELS",
]

# EDEXGeslachtType.
# Keyed by the snapshot's words (Gender and Relation are str enums, so either looks up).
GENDER_CODES: dict[str, str] = {
    Gender.UNKNOWN: "0",
    Gender.MALE: "1",
    Gender.FEMALE: "2",
    Gender.UNSPECIFIED: "9",
}
GENDERS: dict[str, Gender] = {code: Gender(gender) for gender, code in GENDER_CODES.items()}

# The guardian block's `relatie`; read case-insensitively, written in lower case.
RELATION_CODES: dict[str, str] = {
    Relation.FATHER: "vader",
    Relation.MOTHER: "moeder",
    Relation.CAREGIVER: "verzorger",
    Relation.LEGAL_GUARDIAN: "voogd",
    Relation.OTHER: "overig",
}
RELATIONS: dict[str, Relation] = {code: Relation(rel) for rel, code in RELATION_CODES.items()}

# EDEXJaargroepType: the numeric codes are year levels; the others (baby, dreumes, special
# education, combination group, not PO/VO, historical) carry none. A class without a year
# level is written as a combination group.
YEAR_LEVELS = frozenset({*range(0, 9), *range(11, 17)})
NON_NUMERIC_YEAR_LEVELS = frozenset({"B", "D", "S", "V", "C", "N", "H"})
NO_YEAR_LEVEL = "C"

# EDEXLeerkrachtRolType; a role outside it is written as free text (`rolomschrijving`) and
# read back from there.
ROLES = frozenset(
    {
        "ADJ",
        "ADM",
        "CON",
        "DIR",
        "ICT",
        "IB",
        "KLA",
        "LRK",
        "LOS",
        "LOC",
        "OWA",
        "OUD",
        "RT",
        "SMW",
        "STA",
        "TAL",
        "VAK",
    }
)
