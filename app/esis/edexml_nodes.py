"""The pieces the EDEXml reader (`edexml.py`) builds its models with.

`Node` collects one model's values from one element and remembers the line each came from,
so a problem names its element and line; the `parse_*` functions convert EDEXml's values
(dates, codes) and say what is wrong without quoting more than a date or a code; `Compactor`
makes the models of one large read share their repeated values; `Warnings` keeps a report
of thousands of records short.
"""

from __future__ import annotations

import datetime as dt
import re
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from lxml import etree
from pydantic import BaseModel, ValidationError
from pydantic_core import SchemaError, SchemaValidator

from app.esis.edexml_validate import Problem
from app.esis.schemas import Gender, Relation, SnapshotGuardian
from app.esis.vocabulary import GENDERS, NON_NUMERIC_YEAR_LEVELS, RELATIONS

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
# Warnings of one kind listed one by one; more are counted in one summary warning, so that a
# board export with thousands of left students does not make a report of thousands of lines.
MAX_WARNINGS_PER_KIND = 20

# The EDEXml element a model field comes from, for messages about a missing value.
FIELD_ELEMENTS = {
    "brin": "brincode",
    "branch": "dependancecode",
    "school_year": "schooljaar",
    "generated_at": "aanmaakdatum",
    "key": "@key",
    "name": "naam",
    "description": "omschrijving",
    "last_name": "achternaam",
    "name_prefix": "voorvoegsel",
    "first_names": "voornamen",
    "initials": "voorletters-1",
    "given_name": "roepnaam",
    "birth_date": "geboortedatum",
    "gender": "geslacht",
    "year_level": "jaargroep",
    "email": "emailadres",
    "phone": "telefoonnummer",
    "group": "groep",
    "composite_groups": "samengestelde_groepen",
    "roles": "rol",
    "groups": "groepen",
    "students": "leerling",
}

_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:Z|[+-]\d{2}:\d{2})?$")
_DATETIME = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})?$")

M = TypeVar("M", bound=BaseModel)


class Invalid(Exception):
    """One problem in the document, with the line it is on (and the element, when one)."""

    def __init__(self, line: int | None, where: str, message: str, tag: str = "") -> None:
        super().__init__(message)
        self.problem = Problem(line, where, message)
        self.tags = [(tag, message.removeprefix(f"{tag} ") if tag else message)]


def source_line(el: etree._Element) -> int | None:
    line = el.sourceline  # lxml-stubs type this attribute badly
    return line if isinstance(line, int) else None


def text_of(el: etree._Element | None) -> str | None:
    """The element's stripped text; whitespace-only or missing counts as absent."""
    if el is None:
        return None
    if len(el) == 0:  # a leaf, as every simple-typed element of a valid document is
        value = el.text or ""
    else:
        value = "".join(t for t in el.itertext() if isinstance(t, str))
    return value.strip() or None


class Compactor:
    """Makes the models of one read smaller: a board export holds ~250,000 of them.

    A model's values are validated (`build`: by the validator of its fields alone) and the
    model is assembled from them (`assemble`) with values shared with the
    other models of the read: fields that repeat (names, group keys, birth dates, a student's
    composite groups), and one
    `__pydantic_fields_set__` per set of given fields (pydantic keeps a new set in every
    instance otherwise). Nothing changes but object identity and how CPython stores the
    fields; the models are frozen, so the shared values and sets never change. The table of
    shared values is bounded: the common values come early, and unique ones would only fill it.
    """

    SHARED = frozenset(
        {"last_name", "name_prefix", "initials", "given_name", "birth_date", "group", "name"}
    )
    MAX_SHARED = 20_000

    def __init__(self) -> None:
        self.values: dict[Any, Any] = {}
        self.fields: dict[frozenset[str], set[str]] = {}
        self.lists: dict[tuple[Any, ...], list[Any]] = {}

    def share(self, value: Any) -> Any:
        known = self.values.get(value)
        if known is not None:
            return known
        if len(self.values) < self.MAX_SHARED:
            self.values[value] = value
        return value

    def share_list(self, items: list[Any]) -> list[Any]:
        """One list for equal lists of keys: most students are in no composite group, or in
        the same few. Nothing changes a snapshot's lists after the read."""
        known = self.lists.get(key := tuple(items))
        if known is not None:
            return known
        shared = [self.share(item) for item in items]
        if len(self.lists) < self.MAX_SHARED:
            self.lists[key] = shared
        return shared

    def __call__(self, model: M) -> M:
        values = model.__dict__
        given = model.__pydantic_fields_set__
        return self.assemble(type(model), values, given)

    def build(self, model: type[M], values: dict[str, Any]) -> M:
        """`self(model.model_validate(values))`, without the validated model in between:
        the model's fields are validated by the validator of its fields alone (`fields_of`),
        which gives the same values, given fields and errors, and no instance with a dict of
        its own to read them back from. Raises ValidationError as `model_validate` does."""
        validator = fields_of(model)
        if validator is None:
            return self(model.model_validate(values))
        checked, _, given = validator.validate_python(values)
        return self.assemble(model, checked, given)

    def assemble(self, model: type[M], values: dict[str, Any], given: set[str]) -> M:
        """`assemble(model, ...)` of validated `values` (all of the model's fields, in order),
        their repeated values shared."""
        table = self.values
        for name in _shared_names(model, self.SHARED):
            # self.share(value), inlined: it runs for most fields of every model.
            if (value := values[name]) is not None:
                if (known := table.get(value)) is not None:
                    values[name] = known
                elif len(table) < self.MAX_SHARED:
                    table[value] = value
        if (groups := values.get("composite_groups")) is not None:
            values["composite_groups"] = self.share_list(groups)
        shared = self.fields.get(key := frozenset(given))
        if shared is None:
            shared = self.fields[key] = set(given)
        return assemble(model, shared, values)


_SHARED_NAMES: dict[type[BaseModel], tuple[str, ...]] = {}


def _shared_names(model: type[BaseModel], shared: frozenset[str]) -> tuple[str, ...]:
    """The model's fields the Compactor shares, in field order."""
    names = _SHARED_NAMES.get(model)
    if names is None:
        names = _SHARED_NAMES[model] = tuple(n for n in model.model_fields if n in shared)
    return names


_FIELDS: dict[type[BaseModel], SchemaValidator | None] = {}


def fields_of(model: type[BaseModel]) -> SchemaValidator | None:
    """The validator of the model's fields, without the model: what pydantic's own validator
    of the model runs before it makes the instance, and gives (values, extra, given fields).
    None for a model that does more than validate its fields (a validator of the whole
    model, `model_post_init`, a custom `__init__`): that one is validated whole."""
    if model in _FIELDS:
        return _FIELDS[model]
    schema: Any = model.__pydantic_core_schema__
    plain = (
        schema.get("type") == "model"
        and schema.get("schema", {}).get("type") == "model-fields"
        and not schema.get("custom_init")
        and not schema.get("post_init")
        and not schema.get("root_model")
        and schema.get("cls") is model
    )
    validator = None
    if plain:
        try:
            validator = SchemaValidator(schema["schema"], schema.get("config"))
        except SchemaError:  # e.g. references to definitions kept with the model's schema
            validator = None
    _FIELDS[model] = validator
    return validator


# Whether `assemble` sets a model's fields one by one (CPython 3.11 and 3.12) or whole.
ONE_BY_ONE = sys.version_info < (3, 13)


def assemble(model: type[M], fields_set: set[str], values: dict[str, Any]) -> M:
    """What `model.model_construct(_fields_set=fields_set, **values)` builds, for a model
    whose fields are all in `values` (no aliases, extra values or private attributes), in a
    fraction of its time and memory: `values` are trusted (validated already).

    The fields are set one by one, as attributes, in the order of `values`: CPython (3.11)
    then keeps them in the instance's own values array, under a table of names that every
    instance of the class shares, about 100 bytes for twelve fields. A `__dict__` set whole,
    as pydantic does, is a dict of its own per instance, about 460 bytes: 70 MB of a
    50,000-student read. The snapshot models' tables of names are made when they are
    defined (`app.esis.schemas._name_fields_first`). tests/test_edexml_reader.py compares
    the two.

    CPython 3.13 lays instances out differently: there the attributes one by one made a
    read larger (2.6 kB a student, against 2.2 kB with the `__dict__` set whole), so from
    3.13 on the `__dict__` is set whole, as before (`ONE_BY_ONE`)."""
    built = model.__new__(model)
    set_ = _SETATTR  # frozen to its users
    if ONE_BY_ONE:
        for name, value in values.items():
            set_(built, name, value)
    else:
        set_(built, "__dict__", values)
    set_(built, "__pydantic_fields_set__", fields_set)
    set_(built, "__pydantic_extra__", None)
    set_(built, "__pydantic_private__", None)
    return built


_SETATTR = object.__setattr__


class Node:
    """Collects one model's values from one element, remembering which child each came from.

    The line of a value is looked up only when pydantic refuses it (`ValidationProblems`):
    `tags` names the child a field was read from, and `children` holds that child. The
    record's label (`where`) is made only when a message needs it."""

    __slots__ = ("children", "el", "key", "kind", "tags", "values")

    def __init__(self, el: etree._Element, kind: str, key: str = "") -> None:
        # The first child of each name: what `find(tag)` gives, for a lookup per field.
        # (Comments and processing instructions are keyed by their non-str tag: never looked
        # up.)
        children: dict[Any, etree._Element] = {}
        for child in el:
            tag = child.tag
            if tag not in children:
                children[tag] = child
        self.children = children
        self.el = el
        self.kind = kind
        self.key = key
        self.values: dict[str, Any] = {}
        self.tags: dict[str, str] = {}  # field name -> the child's tag it was read from

    @property
    def where(self) -> str:
        """The record in messages: `leerling key=00001`, `school`."""
        return f"{self.kind} key={self.key}" if self.key else self.kind

    @property
    def line(self) -> int | None:
        return source_line(self.el)

    def value(self, tag: str, convert: Callable[[str], Any] | None = None) -> Any:
        """Child `tag`'s value (converted), or None when it is absent."""
        child = self.children.get(tag)
        if child is None:
            return None
        # text_of, inlined: this runs for every field of every record.
        text = (child.text or "").strip() if len(child) == 0 else text_of(child)
        if not text:
            return None
        if convert is None:
            return text
        try:
            return convert(text)
        except ValueError as exc:
            raise Invalid(source_line(child), self.where, f"{tag} {exc}", tag) from None

    def put(self, name: str, tag: str, convert: Callable[[str], Any] | None = None) -> Any:
        """Sets field `name` from child `tag`, if present; returns the value."""
        value = self.value(tag, convert)
        if value is not None:
            self.values[name] = value
            self.tags[name] = tag
        return value

    def fill(self, fields: tuple[tuple[str, str], ...]) -> None:
        """`put(name, tag)` for each (name, tag) of `fields`: values without a conversion,
        which no value refuses, in one loop."""
        children = self.children
        for name, tag in fields:
            child = children.get(tag)
            if child is None:
                continue
            text = (child.text or "").strip() if len(child) == 0 else text_of(child)
            if text:
                self.values[name] = text
                self.tags[name] = tag

    def source(self, name: str) -> tuple[str, int | None]:
        """The element and line field `name` came from, for a message: its child's, or the
        record's own for a value set directly (a key, a list of references)."""
        tag = self.tags.get(name)
        if tag is None:
            return FIELD_ELEMENTS.get(name, name), self.line
        return tag, source_line(self.children[tag])

    def build(self, model: type[M], compact: Compactor | None = None) -> M:
        try:
            if compact is not None:
                return compact.build(model, self.values)
            return model.model_validate(self.values)
        except ValidationError as exc:
            raise ValidationProblems(self, exc) from None


class ValidationProblems(Exception):
    def __init__(self, node: Node, exc: ValidationError) -> None:
        super().__init__("invalid values")
        self.problems: list[Problem] = []
        self.tags: list[tuple[str, str]] = []
        where = node.where
        # include_input=False: the offending value may be a name or an e-mail address.
        for err in exc.errors(include_url=False, include_input=False):
            name = str(err["loc"][0]) if err["loc"] else ""
            tag, line = node.source(name)
            self.problems.append(Invalid(line, where, f"{tag}: {err['msg']}").problem)
            self.tags.append((tag, err["msg"]))


def parse_date(text: str) -> dt.date:
    match = _DATE.match(text)
    try:
        if match is None:
            raise ValueError
        return dt.date.fromisoformat(match.group(1))
    except ValueError:
        raise ValueError(f"'{text[:32]}' is not a date") from None


def parse_datetime(text: str) -> dt.datetime:
    """An xs:dateTime; without a zone it is local time in the Netherlands."""
    match = _DATETIME.match(text)
    try:
        if match is None:
            raise ValueError
        base, fraction, zone = match.groups()
        micro = (fraction or ".0")[1:7].ljust(6, "0")
        value = dt.datetime.fromisoformat(
            f"{base}.{micro}{'+00:00' if zone == 'Z' else zone or ''}"
        )
    except ValueError:
        raise ValueError(f"'{text[:40]}' is not a date and time") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=AMSTERDAM)


def parse_year_level(text: str) -> int | None:
    if text.upper() in NON_NUMERIC_YEAR_LEVELS:
        return None
    if text.isascii() and text.isdigit():
        return int(text)
    raise ValueError(f"'{text[:16]}' is not a jaargroep code")


def parse_gender(text: str) -> Gender:
    if text not in GENDERS:
        raise ValueError(f"'{text[:16]}' is not one of 0, 1, 2, 9")
    return GENDERS[text]


def parse_relation(text: str) -> Relation:
    if text.lower() not in RELATIONS:
        raise ValueError(f"'{text[:32]}' is not one of {', '.join(RELATIONS)}")
    return RELATIONS[text.lower()]


def tag_of(message: str) -> tuple[str, str]:
    """(element, reason) of a schema problem: "geboortedatum '2019-02-30' is not a date"."""
    head, _, rest = message.partition(" ")
    head = head.rstrip(":")
    return (
        (head, rest) if rest and head.replace("_", "").replace("-", "").isalnum() else ("", message)
    )


def key_of(el: etree._Element, where: str) -> str:
    key = (el.get("key") or "").strip()
    if not key:
        raise Invalid(source_line(el), where, f"{el.tag} has no key")
    return key


# A guardian's fields but its links, read one by one: `model.__dict__` would make a dict for
# each guardian compared, kept with the model (see `assemble`).
GUARDIAN_VALUES = tuple(name for name in SnapshotGuardian.model_fields if name != "students")


def same_values(model: SnapshotGuardian, values: dict[str, Any]) -> bool:
    """Whether a later occurrence of a guardian says what its first one (`model`) said."""
    given = {name: value for name in GUARDIAN_VALUES if (value := getattr(model, name)) is not None}
    return given == values


@dataclass
class Warnings:
    """Warnings in document order; at most MAX_WARNINGS_PER_KIND of each kind."""

    items: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    summaries: dict[str, str] = field(default_factory=dict)

    def add(self, kind: str, text: str, summary: str) -> None:
        """`summary` is formatted with `n`, the number of warnings left out."""
        self.counts[kind] += 1
        if self.counts[kind] <= MAX_WARNINGS_PER_KIND:
            self.items.append(text)
        else:
            self.summaries.setdefault(kind, summary)

    def all(self) -> list[str]:
        extra = [
            summary.format(n=self.counts[kind] - MAX_WARNINGS_PER_KIND)
            for kind, summary in self.summaries.items()
        ]
        return self.items + extra
