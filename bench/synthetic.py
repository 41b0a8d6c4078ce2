"""A deterministic synthetic school for the benchmarks, as `EsisSnapshot` JSON dictionaries.

Everything comes from one seeded `random.Random`, so the same seed gives the same school on
every machine. The defaults are the benchmark's school: 1,000 students in 24 classes and 6
composite groups, 1,800 guardians (siblings share them; every student has at least one, every
guardian an e-mail address) and 60 staff members with their groups.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import random
from dataclasses import dataclass
from typing import Any

Snapshot = dict[str, Any]

SCHOOL_YEAR = "2026-2027"
GENERATED_AT = dt.datetime(2026, 11, 27, 16, 55, tzinfo=dt.timezone(dt.timedelta(hours=1)))

LAST_NAMES = (
    "Jansen", "de Vries", "van den Berg", "van Dijk", "Bakker", "Janssen", "Visser", "Smit",
    "Meijer", "de Boer", "Mulder", "de Groot", "Bos", "Vos", "Peters", "Hendriks", "van Leeuwen",
    "Dekker", "Brouwer", "de Wit", "Dijkstra", "Smits", "de Graaf", "van der Meer",
    "van der Linden", "Kok", "Jacobs", "de Haan", "Vermeulen", "van den Heuvel", "van der Veen",
    "van den Broek", "de Bruijn", "de Jong", "Schouten", "van Beek", "Willems", "van Vliet",
    "van de Ven", "Hoekstra", "Maas", "Verhoeven", "Koster", "van Dam", "van der Wal", "Prins",
    "Blom", "Huisman", "Peeters", "de Jonge", "Kuipers", "van Veen", "Post", "Kuiper", "Veenstra",
    "Kramer", "van den Brink", "Scholten", "van Wijk", "Postma", "Martens", "Vink", "de Ruiter",
    "Timmermans", "Groen", "Gerritsen", "Jonker", "van Loon", "Boer", "van der Velde", "Willemsen",
    "Smeets", "de Lange", "de Vos", "Bosch", "van Dongen", "Schipper", "de Koning", "van der Laan",
    "Koning",
)  # fmt: skip
GIVEN_NAMES = (
    "Sanne", "Daan", "Emma", "Sem", "Julia", "Lucas", "Mila", "Levi", "Tess", "Finn", "Sophie",
    "Noah", "Zoë", "Milan", "Sara", "Jesse", "Eva", "Luuk", "Nora", "Bram", "Lotte", "Thijs",
    "Anna", "Ruben", "Fleur", "Lars", "Lieke", "Max", "Noor", "Tim", "Isa", "Thomas", "Saar",
    "Gijs", "Roos", "Jens", "Fenna", "Mees", "Yara", "Stijn", "Liv", "Ties", "Nina", "Olivier",
)  # fmt: skip
ADULT_NAMES = (
    "Anna", "Peter", "Marieke", "Jeroen", "Linda", "Mark", "Sandra", "Dennis", "Esther", "Bas",
    "Wendy", "Erik", "Judith", "Martijn", "Ilse", "Remco", "Karin", "Joost", "Monique", "Frank",
    "Ingrid", "Rob", "Petra", "Arjen", "Nicole", "Wouter", "Femke", "Sander", "Kim", "Niels",
)  # fmt: skip
COMPOSITE_NAMES = (
    "Leesgroep 1", "Leesgroep 2", "Plusklas", "Rekengroep", "Taalklas", "Schoolkoor",
)  # fmt: skip
RELATIONS = ("mother", "father", "caregiver", "legal_guardian")
STAFF_ROLES = ("directeur", "intern begeleider", "onderwijsassistent", "vakleerkracht")


@dataclass(frozen=True)
class Shape:
    """How big the synthetic school is."""

    students: int = 1000
    classes: int = 24
    composites: int = 6
    guardians: int = 1800
    staff: int = 60


def _split(name: str) -> tuple[str | None, str]:
    """`van den Berg` -> (`van den`, `Berg`): the prefix (voorvoegsel) and the last name."""
    parts = name.split(" ")
    if len(parts) == 1:
        return None, name
    return " ".join(parts[:-1]), parts[-1]


def _slug(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def _phone(rng: random.Random) -> str:
    return f"+316{rng.randrange(10_000_000, 100_000_000)}"


def build_school(seed: int = 2026, shape: Shape | None = None) -> Snapshot:
    """The school's snapshot body without its `school` header (see `with_header`)."""
    shape = shape or Shape()
    if shape.composites > len(COMPOSITE_NAMES) * 10 or shape.classes < 8:
        raise ValueError("at least 8 classes (one per year level) and few composite groups")
    rng = random.Random(seed)

    classes: list[dict[str, Any]] = []
    for i in range(shape.classes):
        level = 1 + i % 8
        letter = "abcdefghijklmnopqrstuvwxyz"[i // 8]
        classes.append(
            {
                "key": f"G{level}{letter.upper()}",
                "name": f"Groep {level}{letter}",
                "year_level": level,
            }
        )
    composites: list[dict[str, Any]] = [
        {
            "key": f"C{i + 1:02d}",
            "name": f"{COMPOSITE_NAMES[i % len(COMPOSITE_NAMES)]}{'' if i < 6 else f' {i}'}",
            "is_composite": True,
            "description": "Samengestelde groep over de klassen heen",
        }
        for i in range(shape.composites)
    ]

    students: list[dict[str, Any]] = []
    for n in range(1, shape.students + 1):
        group = classes[(n - 1) % len(classes)]
        level = int(group["year_level"])
        given = rng.choice(GIVEN_NAMES)
        prefix, last = _split(rng.choice(LAST_NAMES))
        birth = dt.date(2021 - level, 1, 1) + dt.timedelta(days=rng.randrange(365))
        composite_keys: list[str] = []
        if composites and rng.random() < 0.3:
            composite_keys = sorted(
                c["key"] for c in rng.sample(composites, k=rng.choice((1, 1, 2)))
            )
        student: dict[str, Any] = {
            "key": f"L{n:05d}",
            "last_name": last,
            "name_prefix": prefix,
            "first_names": f"{given} {rng.choice(GIVEN_NAMES)}",
            "initials": f"{given[0]}.",
            "given_name": given,
            "birth_date": birth.isoformat(),
            "gender": rng.choice(("male", "female", "female", "male", "unspecified")),
            "year_level": level,
            "group": group["key"],
            "composite_groups": composite_keys,
        }
        if level >= 7:
            student["email"] = f"{_slug(given)}.{_slug(last)}{n}@leerling.example.nl"
        students.append(student)

    # Families: siblings share their guardians. Each family gets one or two guardians, then
    # step-parents and caregivers are added (at most four per family) up to the total.
    order = list(range(len(students)))
    rng.shuffle(order)
    families: list[list[int]] = []
    position = 0
    while position < len(order):
        size = rng.choices((1, 2, 3), weights=(60, 30, 10))[0]
        families.append(order[position : position + size])
        position += size
    per_family = [2 if rng.random() < 0.8 else 1 for _ in families]
    missing = shape.guardians - sum(per_family)
    if missing < 0:
        raise ValueError("more families than guardians: raise the number of guardians")
    slots = [f for f, count in enumerate(per_family) for _ in range(4 - count)]
    if missing > len(slots):
        raise ValueError("too many guardians for the families: raise the number of students")
    for chosen in rng.sample(slots, k=missing):
        per_family[chosen] += 1

    guardians: list[dict[str, Any]] = []
    for family, count in zip(families, per_family, strict=True):
        first_child = students[family[0]]
        for g in range(count):
            n = len(guardians) + 1
            given = rng.choice(ADULT_NAMES)
            if g == 0:
                prefix, last = first_child["name_prefix"], first_child["last_name"]
            else:
                prefix, last = _split(rng.choice(LAST_NAMES))
            relation = RELATIONS[min(g, len(RELATIONS) - 1)]
            guardians.append(
                {
                    "key": f"O{n:05d}",
                    "last_name": last,
                    "name_prefix": prefix,
                    "initials": f"{given[0]}.",
                    "given_name": given,
                    "email": f"{_slug(given)}.{_slug(last)}{n}@example.nl",
                    "phone": _phone(rng),
                    "students": [
                        {"student": students[child]["key"], "relation": relation}
                        for child in sorted(family)
                    ],
                }
            )

    staff: list[dict[str, Any]] = []
    all_groups = classes + composites
    for n in range(1, shape.staff + 1):
        given = rng.choice(ADULT_NAMES)
        prefix, last = _split(rng.choice(LAST_NAMES))
        if n <= len(classes):
            # One class teacher per class; a third of them also teach a composite group.
            groups = [classes[n - 1]["key"]]
            roles = ["leerkracht"]
            if composites and rng.random() < 0.33:
                groups.append(rng.choice(composites)["key"])
        elif n <= 2 * len(classes):
            # Duo teachers share a class; some have two.
            groups = sorted(g["key"] for g in rng.sample(classes, k=rng.choice((1, 1, 2))))
            roles = ["leerkracht"]
        else:
            role = rng.choice(STAFF_ROLES)
            roles = [role]
            k = 0 if role in ("directeur", "intern begeleider") else rng.choice((1, 2, 3))
            groups = sorted(g["key"] for g in rng.sample(all_groups, k=k))
        staff.append(
            {
                "key": f"M{n:03d}",
                "last_name": last,
                "name_prefix": prefix,
                "initials": f"{given[0]}.",
                "given_name": given,
                "email": f"{_slug(given[0])}.{_slug(last)}{n}@school.example.nl",
                "roles": roles,
                "groups": groups,
            }
        )

    return {
        "groups": classes + composites,
        "students": students,
        "guardians": guardians,
        "staff": staff,
    }


def with_header(body: Snapshot, *, brin: str, push: int) -> Snapshot:
    """The snapshot for school `brin`; `push` varies `generated_at` so every body is distinct."""
    generated = GENERATED_AT + dt.timedelta(minutes=push)
    return {
        "school": {
            "brin": brin,
            "branch": "00",
            "school_year": SCHOOL_YEAR,
            "generated_at": generated.isoformat(),
        },
        **body,
    }


@dataclass(frozen=True)
class Change:
    """What `changed` did, so that the benchmark can check the service's counts."""

    students_changed: int
    guardians_changed: int
    students_added: int
    guardians_added: int


def changed(body: Snapshot, *, seed: int = 7, share: float = 0.01) -> tuple[Snapshot, Change]:
    """`share` of students and guardians with a changed personal field, `share` new students.

    A changed student gets a new last name or e-mail address, a changed guardian a new e-mail
    address or last name; each new student comes with a new guardian of their own.
    """
    rng = random.Random(seed)
    out = copy.deepcopy(body)
    students: list[dict[str, Any]] = out["students"]
    guardians: list[dict[str, Any]] = out["guardians"]
    n_students = max(1, round(len(students) * share))
    n_guardians = max(1, round(len(guardians) * share))

    for student in rng.sample(students, k=n_students):
        if rng.random() < 0.5:
            student["last_name"] = f"{student['last_name']}-Smit"
        else:
            student["email"] = f"nieuw.{student['key'].lower()}@leerling.example.nl"
    for guardian in rng.sample(guardians, k=n_guardians):
        if rng.random() < 0.7:
            guardian["email"] = f"nieuw.{guardian['key'].lower()}@example.nl"
        else:
            guardian["last_name"] = f"{guardian['last_name']}-Bakker"

    classes = [g for g in out["groups"] if not g.get("is_composite")]
    next_student = len(students) + 1
    next_guardian = len(guardians) + 1
    for i in range(n_students):
        group = rng.choice(classes)
        level = int(group["year_level"])
        given = rng.choice(GIVEN_NAMES)
        prefix, last = _split(rng.choice(LAST_NAMES))
        key = f"L{next_student + i:05d}"
        students.append(
            {
                "key": key,
                "last_name": last,
                "name_prefix": prefix,
                "given_name": given,
                "initials": f"{given[0]}.",
                "birth_date": (dt.date(2021 - level, 1, 1) + dt.timedelta(days=i)).isoformat(),
                "gender": "unknown",
                "year_level": level,
                "group": group["key"],
                "composite_groups": [],
            }
        )
        parent = rng.choice(ADULT_NAMES)
        gkey = f"O{next_guardian + i:05d}"
        guardians.append(
            {
                "key": gkey,
                "last_name": last,
                "name_prefix": prefix,
                "initials": f"{parent[0]}.",
                "given_name": parent,
                "email": f"{_slug(parent)}.{gkey.lower()}@example.nl",
                "phone": _phone(rng),
                "students": [{"student": key, "relation": "mother"}],
            }
        )
    return out, Change(n_students, n_guardians, n_students, n_students)


def encode(snapshot: Snapshot) -> bytes:
    return json.dumps(snapshot, ensure_ascii=False, separators=(",", ":")).encode()


def summary(body: Snapshot) -> dict[str, int]:
    """Record and link counts of a snapshot body."""
    return {
        "groups": len(body["groups"]),
        "composite_groups": sum(1 for g in body["groups"] if g.get("is_composite")),
        "students": len(body["students"]),
        "guardians": len(body["guardians"]),
        "staff": len(body["staff"]),
        "student_group_links": sum(
            (1 if s.get("group") else 0) + len(s["composite_groups"]) for s in body["students"]
        ),
        "student_guardian_links": sum(len(g["students"]) for g in body["guardians"]),
        "staff_group_links": sum(len(s["groups"]) for s in body["staff"]),
    }
