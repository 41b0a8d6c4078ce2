"""Guardian contact files: the CSV a school exports from its spreadsheet, read into rows.

Pure: bytes in, rows or a list of every problem (line, column, message) out. Schools export
these from Excel or LibreOffice, so the reader accepts what those write: `;` or `,` (sniffed
from the header line), UTF-8 with or without BOM, Windows-1252 when the bytes are not UTF-8,
and Dutch or English header names in any case and spacing (docs/integrator.md has the table).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from dataclasses import dataclass
from typing import Any

# Far above a school's guardians (a large school has some 1,500); bounds one request.
MAX_BYTES = 2 * 1024 * 1024
MAX_ROWS = 10_000
MAX_PROBLEMS = 200  # listing more helps nobody and only grows the answer

# Our field -> the header names schools use for it (compared without case, spaces, - and _).
HEADERS: dict[str, tuple[str, ...]] = {
    "student_key": ("leerlingnummer", "leerlingnr", "leerling_key", "student_key", "student_id"),
    "student_last_name": ("achternaam leerling", "student_last_name"),
    "student_given_name": (
        "roepnaam leerling",
        "voornaam leerling",
        "student_given_name",
        "student_first_name",
    ),
    "birth_date": ("geboortedatum", "geboortedatum leerling", "birth_date", "date_of_birth"),
    "last_name": ("achternaam", "achternaam ouder", "last_name", "guardian_last_name"),
    "name_prefix": ("tussenvoegsel", "voorvoegsel", "name_prefix"),
    "initials": ("voorletters", "initials"),
    "given_name": ("roepnaam", "voornaam", "given_name", "first_name"),
    "relation": ("relatie", "relation"),
    "email": ("e-mail", "emailadres", "e-mailadres", "email"),
    "phone": ("telefoon", "telefoonnummer", "mobiel", "phone"),
}
RELATIONS = {
    "vader": "father",
    "father": "father",
    "moeder": "mother",
    "mother": "mother",
    "verzorger": "caregiver",
    "verzorgster": "caregiver",
    "caregiver": "caregiver",
    "voogd": "legal_guardian",
    "legal_guardian": "legal_guardian",
    "ouder": "other",
    "anders": "other",
    "other": "other",
}
LIMITS = {
    "student_key": 256,
    "student_last_name": 200,
    "student_given_name": 100,
    "last_name": 200,
    "name_prefix": 50,
    "initials": 50,
    "given_name": 100,
}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^[0-9+()\- ]{6,50}$")
_DUTCH_DATE = re.compile(r"^(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})$")


def _norm(header: str) -> str:
    return re.sub(r"[\s_\-]+", "", header).casefold()


_BY_HEADER = {_norm(name): field for field, names in HEADERS.items() for name in names}


@dataclass(frozen=True)
class ContactRow:
    line: int
    student_key: str | None
    student_last_name: str | None
    student_given_name: str | None
    birth_date: dt.date | None
    last_name: str
    name_prefix: str | None
    initials: str | None
    given_name: str | None
    relation: str | None
    email: str | None
    phone: str | None

    def guardian(self) -> dict[str, Any]:
        """The guardian's own fields, as the roster stores them."""
        return {
            "last_name": self.last_name,
            "name_prefix": self.name_prefix,
            "initials": self.initials,
            "given_name": self.given_name,
            "email": self.email,
            "phone": self.phone,
        }


@dataclass(frozen=True)
class ContactFile:
    rows: list[ContactRow]
    columns: dict[str, int]  # our field -> 1-based column, to point problems found later


class ContactFileError(Exception):
    """The file is refused: every problem, each with its line and column (1-based)."""

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(problems)} problems in the contact file")
        self.problems = problems


def decode(body: bytes) -> str:
    """UTF-8 (a BOM is dropped), else Windows-1252: what spreadsheets save as 'CSV'."""
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError:
        # cp1252 leaves five bytes undefined; they are replaced rather than refusing a file.
        return body.decode("cp1252", errors="replace")


def _separator(header_line: str) -> str:
    # The header names hold neither, so whichever appears more often separates them.
    return ";" if header_line.count(";") >= header_line.count(",") else ","


def _date(text: str) -> dt.date:
    match = _DUTCH_DATE.match(text)
    if match:
        day, month, year = (int(part) for part in match.groups())
        return dt.date(year, month, day)
    return dt.date.fromisoformat(text)


def read_contacts(body: bytes) -> ContactFile:
    if len(body) > MAX_BYTES:
        raise ContactFileError(
            [{"line": None, "column": None, "message": f"the file is over {MAX_BYTES} bytes"}]
        )
    text = decode(body)
    first = text.split("\n", 1)[0]
    if not first.strip():
        raise ContactFileError([{"line": 1, "column": None, "message": "no header line"}])
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_separator(first))
    problems: list[dict[str, Any]] = []
    try:
        header = next(reader)
    except csv.Error as exc:
        raise ContactFileError([{"line": 1, "column": None, "message": str(exc)}]) from None
    columns: dict[str, int] = {}
    for number, name in enumerate(header, start=1):
        field = _BY_HEADER.get(_norm(name))
        if field is None:
            if name.strip():
                problems.append(
                    {"line": 1, "column": number, "message": f"unknown column {name.strip()!r}"}
                )
        elif field in columns:
            problems.append({"line": 1, "column": number, "message": f"{field} appears twice"})
        else:
            columns[field] = number
    if "last_name" not in columns:
        problems.append(
            {"line": 1, "column": None, "message": "no column for the guardian's last name"}
        )
    if "student_key" not in columns and not {"student_last_name", "birth_date"} <= set(columns):
        problems.append(
            {
                "line": 1,
                "column": None,
                "message": "no way to find the student: a student key column, or the student's "
                "last name and birth date",
            }
        )
    if problems:
        raise ContactFileError(problems)
    rows: list[ContactRow] = []
    try:
        for cells in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in cells):
                continue  # spreadsheets end files with empty rows
            if len(rows) >= MAX_ROWS:
                problems.append(
                    {"line": line, "column": None, "message": f"more than {MAX_ROWS} rows"}
                )
                break
            row = _row(line, cells, columns, problems)
            if row is not None:
                rows.append(row)
            if len(problems) >= MAX_PROBLEMS:
                break
    except csv.Error as exc:
        problems.append({"line": reader.line_num, "column": None, "message": str(exc)})
    if problems:
        raise ContactFileError(problems[:MAX_PROBLEMS])
    if not rows:
        raise ContactFileError([{"line": 2, "column": None, "message": "the file has no rows"}])
    return ContactFile(rows, columns)


def _row(
    line: int, cells: list[str], columns: dict[str, int], problems: list[dict[str, Any]]
) -> ContactRow | None:
    values: dict[str, Any] = {}
    before = len(problems)

    def problem(field: str | None, message: str) -> None:
        problems.append(
            {"line": line, "column": columns.get(field) if field else None, "message": message}
        )

    for field, number in columns.items():
        cell = cells[number - 1].strip() if number <= len(cells) else ""
        values[field] = cell or None
        limit = LIMITS.get(field)
        if cell and limit is not None and len(cell) > limit:
            problem(field, f"{field} is longer than {limit} characters")
    if values.get("birth_date"):
        try:
            values["birth_date"] = _date(values["birth_date"])
        except ValueError:
            problem("birth_date", f"{values['birth_date']!r} is not a date (DD-MM-YYYY or ISO)")
    if values.get("relation"):
        relation = RELATIONS.get(values["relation"].casefold())
        if relation is None:
            problem("relation", f"unknown relation {values['relation']!r}")
        values["relation"] = relation
    if values.get("email") and not _EMAIL.match(values["email"]):
        problem("email", "not an e-mail address")
    if values.get("phone") and not _PHONE.match(values["phone"]):
        problem("phone", "not a phone number")
    if not values.get("last_name"):
        problem("last_name", "the guardian's last name is empty")
    if not values.get("student_key") and not (
        values.get("student_last_name") and values.get("birth_date")
    ):
        problem(
            "student_key" if "student_key" in columns else "student_last_name",
            "the student is not named: give a student key, or last name and birth date",
        )
    if len(problems) > before:
        return None
    fields: dict[str, Any] = {f: values.get(f) for f in HEADERS}
    return ContactRow(line=line, **fields)
