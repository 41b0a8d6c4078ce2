"""`esis-sync demo` (`make demo`): the whole coupling on the embedded default, in one process.

Starts the fake ESIS (HTTPS with a client certificate) and the service, creates a school with
a synthetic roster, activates it through a pull, makes a local edit, lets ESIS change its
data, pulls again, and prints what happened and how to explore further.
"""

from __future__ import annotations

import random
import shutil
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from app.config import Settings
from fake_esis.server import DEFAULT_AUTORISATIE, FakeEsis

FIRST = [
    "Sanne",
    "Daan",
    "Emma",
    "Noah",
    "Julia",
    "Liam",
    "Tess",
    "Sem",
    "Mila",
    "Finn",
    "Zoë",
    "Lucas",
    "Eva",
    "Levi",
    "Nora",
    "Jesse",
    "Fenna",
    "Milan",
    "Lotte",
    "Bram",
]
LAST = [
    ("de", "Jong"),
    (None, "Jansen"),
    ("de", "Vries"),
    ("van den", "Berg"),
    ("van", "Dijk"),
    (None, "Bakker"),
    (None, "Visser"),
    (None, "Smit"),
    (None, "Meijer"),
    ("de", "Boer"),
    (None, "Mulder"),
    ("de", "Groot"),
    (None, "Bos"),
    ("van", "Leeuwen"),
]


def roster(*, students: int = 120, seed: int = 2026) -> dict[str, Any]:
    """A made-up school: groups 1-8, a reading group, siblings sharing guardians, teachers."""
    rng = random.Random(seed)  # noqa: S311 (made-up names, not secrets)
    groups = [{"key": f"G{n}", "name": f"Groep {n}", "year_level": n} for n in range(1, 9)]
    groups.append({"key": "LEES", "name": "Leesclub", "is_composite": True})
    out: dict[str, Any] = {
        "school": {
            "brin": "12AB",
            "branch": "00",
            "school_year": "2026-2027",
            "generated_at": "2026-11-27T16:55:00+01:00",
        },
        "groups": groups,
        "students": [],
        "guardians": [],
        "staff": [],
    }
    family: dict[str, Any] | None = None
    for i in range(1, students + 1):
        if family is None or rng.random() > 0.3:  # a new family, or a sibling
            prefix, last = rng.choice(LAST)
            n = len(out["guardians"]) + 1
            family = {
                "key": f"V{n:04d}",
                "last_name": last,
                "name_prefix": prefix,
                "initials": rng.choice("ABCDEFGHJKLMNPRS"),
                "email": f"ouder{n}@example.nl",
                "phone": f"+316{rng.randint(10**7, 10**8 - 1)}",
                "students": [],
            }
            out["guardians"].append(family)
        level = 1 + (i % 8)
        key = f"L{i:04d}"
        out["students"].append(
            {
                "key": key,
                "last_name": family["last_name"],
                "name_prefix": family["name_prefix"],
                "given_name": rng.choice(FIRST),
                "birth_date": f"{2022 - level}-{1 + i % 12:02d}-{1 + i % 27:02d}",
                "gender": rng.choice(["male", "female"]),
                "year_level": level,
                "group": f"G{level}",
                "composite_groups": ["LEES"] if i % 7 == 0 else [],
            }
        )
        family["students"].append({"student": key, "relation": rng.choice(["mother", "father"])})
    for n in range(1, 11):
        prefix, last = rng.choice(LAST)
        out["staff"].append(
            {
                "key": f"LK{n:02d}",
                "last_name": last,
                "name_prefix": prefix,
                "initials": rng.choice("ABCDEFGHJKLMNPRS"),
                "roles": ["LRK"],
                "email": f"leerkracht{n}@school.example.nl",
                "groups": [f"G{1 + (n - 1) % 8}"],
            }
        )
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(
    *, directory: Path, port: int | None, keep_serving: bool, say: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run the demo; returns what it saw (the tests read it)."""
    from app.auth.models import Role
    from app.auth.service import create_key
    from app.db import make_engine, make_sessionmaker, write_transaction
    from app.main import create_app
    from app.migrations import upgrade

    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    settings = Settings(
        database_url=f"sqlite:///{directory / 'esis-sync.db'}",
        bootstrap_operator_key=False,
        embedded_worker=False,
        allow_private_esis_hosts=True,  # the demo's fake ESIS is on loopback
        _env_file=None,
    )
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    with write_transaction(make_sessionmaker(engine)) as session:
        _key, operator = create_key(
            session=session, role=Role.OPERATOR, name="demo", school_id=None, created_by="demo"
        )
    engine.dispose()

    port = port or _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    kit = FakeEsis.generate(directory / "pki")
    seen: dict[str, Any] = {}
    with kit.serve() as esis, httpx.Client(base_url=base, timeout=60, trust_env=False) as http:
        for _ in range(100):
            if server.started:
                break
            time.sleep(0.05)
        op = {"Authorization": f"Bearer {operator}"}
        http.post(
            "/api/v1/schools", json={"brin": "12AB", "name": "Basisschool De Regenboog"}, headers=op
        ).raise_for_status()
        admin = http.post(
            "/api/v1/schools/12AB00/api-keys", json={"role": "admin", "name": "demo"}, headers=op
        ).json()["secret"]
        ad = {"Authorization": f"Bearer {admin}"}
        data = roster()
        esis.script("12AB", "00", answer=data)
        http.put(
            "/api/v1/schools/12AB00/esis/connection",
            headers=ad,
            json={
                "url": esis.url,
                "ca_pem": kit.ca.cert.decode(),
                "certificate": {
                    "cert_pem": kit.client.cert.decode(),
                    "key_pem": kit.client.key.decode(),
                },
                **DEFAULT_AUTORISATIE,
            },
        ).raise_for_status()
        say(f"fake ESIS on {esis.url}; esis-sync on {base} (data in {directory})")

        first = http.post("/api/v1/schools/12AB00/esis/pulls", headers=ad).json()
        ready = http.get("/api/v1/schools/12AB00/esis/readiness", headers=ad).json()
        say(f"1. pulled from ESIS: run {first['status']}; ready for activation: {ready['ready']}")
        activation = http.post("/api/v1/schools/12AB00/esis/activation", headers=ad).json()
        added = {e: c["added"] for e, c in activation["counts"].items() if c["added"]}
        say(f"2. activated (R2): added {added}")
        seen["activation"] = activation

        guardians = http.get(
            "/api/v1/schools/12AB00/guardians?q=ouder1@example.nl", headers=ad
        ).json()["items"]
        guardian = guardians[0]
        edited = http.patch(
            f"/api/v1/schools/12AB00/guardians/{guardian['id']}",
            headers=ad,
            json={"email": "nieuw.adres@example.nl"},
        )
        edited.raise_for_status()
        key = guardian["provenance"]["esis_key"]
        say(f"3. a parent corrected their e-mail here (guardian {key})")

        later = roster()
        later["school"]["generated_at"] = "2026-11-28T16:55:00+01:00"
        later["guardians"][0]["email"] = "oud.adres@example.nl"
        later["students"].append(
            {
                "key": "L9001",
                "last_name": "Instromer",
                "given_name": "Mees",
                "group": "G1",
                "year_level": 1,
            }
        )
        later["guardians"].append(
            {
                "key": "V9001",
                "last_name": "Instromer",
                "initials": "T",
                "email": "instromer@example.nl",
                "students": [{"student": "L9001", "relation": "mother"}],
            }
        )
        esis.script("12AB", "00", answer=later)
        second = http.post("/api/v1/schools/12AB00/esis/pulls", headers=ad).json()
        say(
            f"4. ESIS changed that e-mail and added a student; pulled again: run "
            f"{second['status']}, students added {second['counts']['student']['added']}, "
            f"drift opened {second['counts']['guardian']['drift_opened']}"
        )
        drift = http.get("/api/v1/schools/12AB00/drift", headers=ad).json()["items"]
        for item in drift:
            say(
                f"   drift (R5): {item['entity']} {item['field']}: ours {item['our_value']!r}, "
                f"ESIS {item['esis_value']!r} - the parent's correction stays"
            )
        events = http.get("/api/v1/schools/12AB00/events?limit=1000", headers=ad).json()["items"]
        kinds: dict[str, int] = {}
        for event in events:
            kinds[event["kind"]] = kinds.get(event["kind"], 0) + 1
        say(f"5. change feed: {len(events)} events {kinds}")
        seen.update(second=second, drift=drift, events=len(events))
        say("\nExplore (the admin key is for this demo only):")
        say(f"  export KEY={admin}")
        for path in (
            "/api/v1/schools/12AB00",
            "/api/v1/schools/12AB00/drift",
            "/api/v1/schools/12AB00/students?limit=5",
            "/api/v1/schools/12AB00/sync-runs",
            "/api/v1/schools/12AB00/events?limit=20",
        ):
            say(f'  curl -s -H "Authorization: Bearer $KEY" {base}{path}')
        say(f"  API docs: {base}/docs")
        if keep_serving:
            say("\nServing until Ctrl-C.")
            try:
                while thread.is_alive():
                    time.sleep(0.5)
            except KeyboardInterrupt:
                pass
    server.should_exit = True
    thread.join(timeout=10)
    return seen
