"""The UWLR 2.2 client against the fake ESIS: real HTTPS with client certificates, no database."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from app.esis import uwlr_transport
from app.esis.certs import ClientIdentity, load_client_identity
from app.esis.errors import FormatError
from app.esis.schemas import EsisSnapshot, Relation
from app.esis.uwlr import (
    NS_AUTORISATIE,
    NS_LEERLINGGEGEVENS,
    SOAP_ACTION,
    UwlrConnection,
    UwlrError,
    build_request,
    client_ssl_context,
    fetch,
    parse_answer,
)
from app.esis.uwlr_normalise import without_eckid
from fake_esis.pki import make_ca, make_cert, pkcs12_bytes
from fake_esis.server import (
    DEFAULT_AUTORISATIE,
    FakeEsis,
    FakeEsisKit,
    edex_from_snapshot,
    soap_answer,
    soap_fault,
)

GUARDIANS = Path(__file__).parent / "fixtures" / "edexml" / "guardians-2.1.xml"
# The official sample: tests/fixtures/edexml/official/ (its README says where from).
SAMPLE_21 = (
    Path(__file__).resolve().parent
    / "fixtures"
    / "edexml"
    / "official"
    / "EDEXML-2.1"
    / "EDEXML.Voorbeeld.2.1.xml"
)
TODAY = dt.date(2026, 11, 28)
FAST = httpx.Timeout(2.0, read=0.3)
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"


class Sleeps(list[float]):
    """An injected `sleep` that records instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def conn(kit: FakeEsisKit, esis: FakeEsis) -> UwlrConnection:
    return kit.connection(esis)


def run(
    conn: UwlrConnection,
    sleeps: Sleeps | None = None,
    *,
    attempts: int = 4,
    backoff: float = 1.0,
    timeouts: httpx.Timeout = FAST,
) -> UwlrError:
    """Fetches 12AB/00 expecting a failure; returns the UwlrError."""
    with pytest.raises(UwlrError) as info:
        fetch(
            conn=conn,
            brin="12AB",
            branch="00",
            sleep=sleeps if sleeps is not None else Sleeps(),
            timeouts=timeouts,
            attempts=attempts,
            backoff=backoff,
        )
    return info.value


def envelope_without_data() -> bytes:
    return (
        f'<s:Envelope xmlns:s="{SOAP}"><s:Body>'
        f'<leerlinggegevens_antwoord xmlns="{NS_LEERLINGGEGEVENS}"/>'
        "</s:Body></s:Envelope>"
    ).encode()


# --- happy path ----------------------------------------------------------------------------


def test_guardian_fixture_is_fetched_into_a_snapshot(esis: FakeEsis, conn: UwlrConnection) -> None:
    esis.script("12AB", "00", answer=GUARDIANS.read_bytes())
    read = fetch(conn=conn, brin="12AB", branch="00", school_year="2026-2027", today=TODAY)
    snap = read.snapshot
    assert (snap.school.brin, snap.school.branch, snap.school.school_year) == (
        "12AB",
        "00",
        "2026-2027",
    )
    assert [s.key for s in snap.students] == ["00001", "00002", "00003", "00005"]
    assert {g.key for g in snap.groups} == {"G5A", "LEES1", "G6B"}
    assert [s.key for s in snap.staff] == ["LK01", "LK02"]
    guardians = {g.key: g for g in snap.guardians}
    assert set(guardians) == {"V0001", "V0002", "V0004", "V0006", "V0007"}
    assert {(link.student, link.relation) for link in guardians["V0001"].students} == {
        ("00001", Relation.MOTHER),
        ("00002", Relation.MOTHER),
    }
    assert guardians["V0004"].students[0].relation is Relation.LEGAL_GUARDIAN
    # The vendor block is skipped (xsi:type survived the namespace change), the leaver left out.
    assert any("LeverancierXGegevensType" in w for w in read.warnings)
    assert any("00004" in w for w in read.warnings)


def test_request_carries_soap_action_autorisatie_and_school(
    kit: FakeEsisKit, esis: FakeEsis, conn: UwlrConnection
) -> None:
    esis.script("12AB", "01")
    fetch(conn=conn, brin="12ab", branch="01", school_year="2026-2027")
    fetch(conn=conn, brin="12AB", branch="01")  # no school year: the current one
    first, second = esis.requests
    assert first.soap_action == SOAP_ACTION == "HaalLeerlinggegevens"
    assert (first.autorisatiesleutel, first.klantcode, first.klantnaam) == (
        DEFAULT_AUTORISATIE["autorisatiesleutel"],
        DEFAULT_AUTORISATIE["klantcode"],
        DEFAULT_AUTORISATIE["klantnaam"],
    )
    assert (first.brin, first.branch, first.schooljaar, first.xsdversie) == (
        "12AB",
        "01",
        "2026-2027",
        "2.2",
    )
    assert second.schooljaar is None
    assert first.client_subject == kit.identity().subject
    assert "CN=esis-sync test client" in (first.client_subject or "")


def test_snapshot_dict_round_trips_through_the_fake(esis: FakeEsis, conn: UwlrConnection) -> None:
    example: dict[str, Any] = EsisSnapshot.model_json_schema()["examples"][0]
    # EDEXml's XSD knows only role codes (LRK = leerkracht).
    example["staff"] = [{**member, "roles": ["LRK"]} for member in example["staff"]]
    expected = EsisSnapshot.model_validate(example)
    esis.script("12AB", "00", answer=example)
    assert fetch(conn=conn, brin="12AB", branch="00").snapshot == expected


def test_build_request_escapes_and_uses_the_namespaces(conn: UwlrConnection) -> None:
    conn.klantnaam = 'Bestuur <"De Linde"> & Co'
    body = build_request(conn=conn, brin="12AB", branch="00", school_year=None)
    root = etree.fromstring(body)
    ns = {"s": SOAP, "a": NS_AUTORISATIE, "l": NS_LEERLINGGEGEVENS}
    assert root.findtext("s:Header/a:autorisatie/a:klantnaam", namespaces=ns) == conn.klantnaam
    verzoek = root.find("s:Body/l:leerlinggegevens_verzoek", namespaces=ns)
    assert verzoek is not None
    assert [etree.QName(c).localname for c in verzoek] == [
        "schooljaar",
        "brincode",
        "dependancecode",
        "xsdversie",
    ]
    assert [c.text for c in verzoek] == [None, "12AB", "00", "2.2"]


@pytest.mark.parametrize(
    ("brin", "branch", "year"),
    [("12A", "00", None), ("12AB", "0", None), ("12AB", "00", "2026/27")],
)
def test_build_request_refuses_bad_school_references(
    conn: UwlrConnection, brin: str, branch: str, year: str | None
) -> None:
    with pytest.raises(UwlrError) as info:
        build_request(conn=conn, brin=brin, branch=branch, school_year=year)
    assert info.value.kind == "request"
    assert not info.value.transient


# --- failures that are not retried -------------------------------------------------------


def test_soap_fault_is_an_error_after_one_attempt(esis: FakeEsis, conn: UwlrConnection) -> None:
    esis.script("12AB", "00", mode="fault")
    sleeps = Sleeps()
    error = run(conn, sleeps)
    assert (error.kind, error.transient, error.attempts, error.status) == ("fault", False, 1, 500)
    assert "Interne fout" in error.detail
    assert esis.served("12AB") == 1
    assert sleeps == []


def test_wrong_autorisatie_is_a_fault_without_retry(kit: FakeEsisKit, esis: FakeEsis) -> None:
    esis.script("12AB", "00")
    error = run(kit.connection(esis, autorisatiesleutel="wrong"))
    assert (error.kind, error.attempts) == ("fault", 1)
    assert "Autorisatie" in error.detail
    assert esis.requests[0].autorisatiesleutel == "wrong"


def test_http_403_is_not_retried(esis: FakeEsis, conn: UwlrConnection) -> None:
    esis.script("12AB", "00", mode="http_error", status=403)
    sleeps = Sleeps()
    error = run(conn, sleeps)
    assert (error.kind, error.status, error.transient, error.attempts) == ("http", 403, False, 1)
    assert len(esis.requests) == 1
    assert sleeps == []


def test_client_certificate_from_another_ca_is_a_tls_error_without_retry(
    kit: FakeEsisKit, esis: FakeEsis
) -> None:
    other = make_ca("Some other CA")
    intruder = make_cert(other, "intruder", server=False)
    identity = load_client_identity(cert_pem=intruder.cert, key_pem=intruder.key)
    esis.script("12AB", "00")
    sleeps = Sleeps()
    error = run(kit.connection(esis, identity=identity), sleeps)
    assert (error.kind, error.transient, error.attempts) == ("tls", False, 1)
    assert esis.requests == []  # the server never saw a request
    assert esis.wait_for_handshake_failure()
    assert sleeps == []


def test_server_certificate_from_an_untrusted_ca_is_a_tls_error(
    kit: FakeEsisKit, esis: FakeEsis
) -> None:
    esis.script("12AB", "00")
    error = run(kit.connection(esis, ca_pem=make_ca("Not the server's CA").cert))
    assert (error.kind, error.attempts) == ("tls", 1)
    assert "certificate verify failed" in error.detail.lower()


def test_expired_identity_is_refused_before_connecting(kit: FakeEsisKit, esis: FakeEsis) -> None:
    good = kit.identity()
    expired = ClientIdentity(
        cert_pem=good.cert_pem,
        key_pem=good.key_pem,
        not_after=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
        subject=good.subject,
    )
    esis.script("12AB", "00")
    error = run(kit.connection(esis, identity=expired))
    assert (error.kind, error.transient) == ("certificate", False)
    assert esis.requests == []


# --- transient failures and retries ------------------------------------------------------


def test_two_503s_then_success_after_three_attempts(esis: FakeEsis, conn: UwlrConnection) -> None:
    esis.script("12AB", "00", answer=GUARDIANS.read_bytes(), fail_times=2)
    sleeps = Sleeps()
    read = fetch(conn=conn, brin="12AB", branch="00", sleep=sleeps, backoff=0.5, today=TODAY)
    assert len(read.snapshot.students) == 4
    assert esis.served("12AB") == 3
    assert len(sleeps) == 2
    assert 0 <= sleeps[0] <= 0.5
    assert 0 <= sleeps[1] <= 1.0


def test_503_every_time_gives_up_after_all_attempts(esis: FakeEsis, conn: UwlrConnection) -> None:
    esis.script("12AB", "00", fail_times=10)
    sleeps = Sleeps()
    error = run(conn, sleeps, attempts=3, backoff=2.0)
    assert (error.kind, error.status, error.transient, error.attempts) == ("http", 503, True, 3)
    assert len(sleeps) == 2
    assert all(0 <= s <= 2.0 * 2**i for i, s in enumerate(sleeps))


def test_stall_beyond_the_read_timeout_is_retried_then_fails(
    esis: FakeEsis, conn: UwlrConnection
) -> None:
    esis.script("12AB", "00", mode="stall", delay=5.0)
    sleeps = Sleeps()
    error = run(conn, sleeps, attempts=2, timeouts=httpx.Timeout(2.0, read=0.2))
    assert (error.kind, error.transient, error.attempts) == ("timeout", True, 2)
    assert esis.served("12AB") == 2
    assert len(sleeps) == 1


def test_stall_within_the_read_timeout_succeeds(esis: FakeEsis, conn: UwlrConnection) -> None:
    esis.script("12AB", "00", mode="stall", delay=0.1)
    read = fetch(conn=conn, brin="12AB", branch="00", timeouts=httpx.Timeout(2.0))
    assert [s.key for s in read.snapshot.students] == ["L0001"]


def test_truncated_answer_is_retried_then_fails(esis: FakeEsis, conn: UwlrConnection) -> None:
    esis.script("12AB", "00", answer=GUARDIANS.read_bytes(), mode="truncate")
    sleeps = Sleeps()
    error = run(conn, sleeps, attempts=3)
    assert (error.kind, error.transient, error.attempts) == ("truncated", True, 3)
    assert esis.served("12AB") == 3
    assert len(sleeps) == 2


def test_answer_without_leerlinggegevens_is_an_error_not_an_empty_school(
    esis: FakeEsis, conn: UwlrConnection
) -> None:
    esis.script("12AB", "00", answer=envelope_without_data())
    error = run(conn, attempts=2)
    assert (error.kind, error.transient, error.attempts) == ("malformed", True, 2)
    assert "leerlinggegevens" in error.detail


# --- parse_answer ----------------------------------------------------------------------------


def test_parse_answer_reads_a_wrapped_edexml_document() -> None:
    read = parse_answer(soap_answer(GUARDIANS.read_bytes()), today=TODAY)
    assert len(read.snapshot.guardians) == 5


def test_parse_answer_reads_the_official_sample() -> None:
    read = parse_answer(soap_answer(SAMPLE_21.read_bytes()), today=TODAY)
    assert read.snapshot.school.brin
    assert read.snapshot.students


def test_parse_answer_keeps_a_prefixed_xsi_type() -> None:
    answer = soap_answer(GUARDIANS.read_bytes()).replace(
        b'xsi:type="VerzorgersGegevensType"', b'xsi:type="ll:VerzorgersGegevensType"'
    )
    answer = answer.replace(
        b"<leerlinggegevens_antwoord ",
        f'<leerlinggegevens_antwoord xmlns:ll="{NS_LEERLINGGEGEVENS}" '.encode(),
    )
    assert b"ll:VerzorgersGegevensType" in answer
    assert len(parse_answer(answer, today=TODAY).snapshot.guardians) == 5


def test_parse_answer_with_prefixed_elements() -> None:
    """Elements may be prefixed instead of in the default namespace."""
    edex = edex_from_snapshot(
        {
            "school": {"brin": "12AB", "school_year": "2026-2027"},
            "students": [{"key": "1", "last_name": "A"}],
        }
    )
    answer = soap_answer(edex).replace(b"<", b"<ll:").replace(b"<ll:/", b"</ll:")
    answer = answer.replace(b"<ll:?xml", b"<?xml").replace(b"ll:s:", b"s:")
    answer = answer.replace(b'xmlns="', b'xmlns:ll="')
    read = parse_answer(answer)
    assert [s.key for s in read.snapshot.students] == ["1"]


@pytest.mark.parametrize("cut", [0, 100, 2000, -20])
def test_parse_answer_truncated_body_is_transient(cut: int) -> None:
    answer = soap_answer(GUARDIANS.read_bytes())
    with pytest.raises(UwlrError) as info:
        parse_answer(answer[:cut])
    assert info.value.kind == "truncated"
    assert info.value.transient


def test_parse_answer_html_page_is_malformed() -> None:
    with pytest.raises(UwlrError) as info:
        parse_answer(b"<html><body><h1>Gateway</h1></body></html>")
    assert (info.value.kind, info.value.transient) == ("malformed", True)


def test_parse_answer_missing_leerlinggegevens_is_never_an_empty_school() -> None:
    with pytest.raises(UwlrError) as info:
        parse_answer(envelope_without_data())
    assert info.value.kind == "malformed"
    empty_body = f'<s:Envelope xmlns:s="{SOAP}"><s:Body/></s:Envelope>'.encode()
    with pytest.raises(UwlrError):
        parse_answer(empty_body)


def test_parse_answer_without_leerlingen_is_invalid_not_empty() -> None:
    answer = soap_answer(GUARDIANS.read_bytes())
    root = etree.fromstring(answer)
    for el in root.iter(f"{{{NS_LEERLINGGEGEVENS}}}leerlingen"):
        el.getparent().remove(el)  # type: ignore[union-attr]
    with pytest.raises(UwlrError) as info:
        parse_answer(etree.tostring(root))
    assert (info.value.kind, info.value.transient) == ("invalid", False)
    assert "leerlingen" in info.value.detail


def test_parse_answer_refuses_a_doctype() -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">]>'
        + soap_answer(GUARDIANS.read_bytes()).split(b"?>", 1)[1]
    )
    with pytest.raises(UwlrError) as info:
        parse_answer(bomb)
    assert (info.value.kind, info.value.transient) == ("malformed", False)


def test_fault_detail_leaves_out_personal_data() -> None:
    fault = soap_fault("Leerling 123456782 (jan.jansen@example.nl) heeft geen groep", "s:Client")
    with pytest.raises(UwlrError) as info:
        parse_answer(fault)
    assert info.value.kind == "fault"
    assert "123456782" not in info.value.detail
    assert "jan.jansen" not in info.value.detail
    assert "geen groep" in info.value.detail


# --- certificates ----------------------------------------------------------------------------


def test_pkcs12_with_the_right_password_loads(kit: FakeEsisKit) -> None:
    identity = load_client_identity(pkcs12=kit.client_p12, password=kit.password)
    assert "CN=esis-sync test client" in identity.subject
    assert identity.not_after.tzinfo is not None
    assert identity.not_after.utcoffset() == dt.timedelta(0)
    assert identity.not_after > dt.datetime.now(dt.UTC)
    assert identity.key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert b"PRIVATE KEY" not in repr(identity).encode()
    assert identity == load_client_identity(cert_pem=kit.client.cert, key_pem=kit.client.key)


def test_wrong_pkcs12_password_is_unprocessable(kit: FakeEsisKit) -> None:
    with pytest.raises(FormatError) as info:
        load_client_identity(pkcs12=kit.client_p12, password="not-the-password")
    assert "password" in info.value.detail
    with pytest.raises(FormatError):
        load_client_identity(pkcs12=kit.client_p12, password=None)


@pytest.mark.parametrize("data", [b"", b"not a pkcs12 file", b"\x30\x82\x01\x00garbage"])
def test_garbage_pkcs12_is_unprocessable(data: bytes) -> None:
    with pytest.raises(FormatError):
        load_client_identity(pkcs12=data, password="x")


def test_expired_client_certificate_is_refused(kit: FakeEsisKit) -> None:
    old = make_cert(
        kit.ca, "old client", server=False, not_after=dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    )
    with pytest.raises(FormatError) as info:
        load_client_identity(pkcs12=pkcs12_bytes(old.cert, old.key, "pw"), password="pw")
    assert "expired on 2024-01-01" in info.value.detail
    with pytest.raises(FormatError):
        load_client_identity(cert_pem=old.cert, key_pem=old.key)


def test_key_of_another_certificate_is_refused(kit: FakeEsisKit) -> None:
    with pytest.raises(FormatError) as info:
        load_client_identity(cert_pem=kit.client.cert, key_pem=kit.server.key)
    assert "does not belong" in info.value.detail


def test_pem_garbage_and_missing_input_are_refused(kit: FakeEsisKit) -> None:
    with pytest.raises(FormatError):
        load_client_identity(cert_pem=b"nope", key_pem=kit.client.key)
    with pytest.raises(FormatError):
        load_client_identity(cert_pem=kit.client.cert, key_pem=b"nope")
    with pytest.raises(FormatError):
        load_client_identity()
    with pytest.raises(FormatError):
        load_client_identity(pkcs12=kit.client_p12, password=kit.password, cert_pem=kit.client.cert)


def test_ssl_context_key_file_is_private_encrypted_and_removed(
    conn: UwlrConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    written: list[tuple[Path, int, int, bytes]] = []
    original = uwlr_transport._write_private

    def spy(path: Path, data: bytes) -> None:
        original(path, data)
        modes = (stat.S_IMODE(path.stat().st_mode), stat.S_IMODE(path.parent.stat().st_mode))
        written.append((path, *modes, path.read_bytes()))

    monkeypatch.setattr(uwlr_transport, "_write_private", spy)
    uwlr_transport.clear_client_contexts()
    client_ssl_context(conn)
    assert len(written) == 2
    for path, mode, folder_mode, _ in written:
        assert (mode, folder_mode) == (0o600, 0o700)
        assert not path.exists()
        assert not path.parent.exists()
    key_file = written[1][3]
    assert key_file.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")


def test_garbage_answer_with_status_200_is_malformed_and_retried(
    esis: FakeEsis, conn: UwlrConnection
) -> None:
    esis.script("12AB", "00", answer=b"<<< not xml")
    error = run(conn, attempts=2)
    assert (error.kind, error.transient, error.attempts) == ("malformed", True, 2)


def test_generated_kit_files_are_private(kit: FakeEsisKit) -> None:
    assert {"ca.pem", "client.p12", "client.key"} <= set(kit.files)
    for path in kit.files.values():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


# --- the ECK-iD removed from a stored answer -------------------------------------------------

_OLD_ECKID = re.compile(rb"""\s+eckid\s*=\s*(?:"[^"<>]*"|'[^'<>]*')""")


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [b" ", b"\t", b"\n", b"\x0b", b"eckid", b"=", b'"', b"'", b"<", b">", b"x", b"1", b"e"]
        ),
        max_size=40,
    ).map(b"".join)
)
def test_without_eckid_removes_what_the_whitespace_first_pattern_removed(body: bytes) -> None:
    assert without_eckid(body) == _OLD_ECKID.sub(b"", body)


def test_without_eckid_of_an_answer() -> None:
    answer = (
        b'<leerling key="1"  eckid="https://id.school/LL_abc"\n\t key2=\'x\'>'
        b"<naam>eckid</naam></leerling><leerkracht eckid='https://id.school/LK_x'/>"
    )
    assert without_eckid(answer) == (
        b"<leerling key=\"1\"\n\t key2='x'><naam>eckid</naam></leerling><leerkracht/>"
    )
    assert without_eckid(answer) == _OLD_ECKID.sub(b"", answer)
    plain = b"<EDEX><leerling key='1'/></EDEX>"
    assert without_eckid(plain) is plain


def test_ssl_contexts_are_kept_per_identity_and_trust_store(
    conn: UwlrConnection, kit: FakeEsisKit
) -> None:
    """One context per certificate, key and CA: made once, then reused by every pull with
    the same identity; another CA or certificate gets its own; a bad key is never kept."""
    uwlr_transport.clear_client_contexts()
    first = client_ssl_context(conn)
    assert client_ssl_context(dataclasses.replace(conn, url="https://other.example")) is first
    other_ca = client_ssl_context(dataclasses.replace(conn, ca_pem=None))
    assert other_ca is not first
    other = make_cert((kit.ca.cert, kit.ca.key), "another-client", server=False)
    identity = dataclasses.replace(conn.identity, cert_pem=other[0], key_pem=other[1])
    assert client_ssl_context(dataclasses.replace(conn, identity=identity)) is not first
    broken = dataclasses.replace(conn.identity, key_pem=other[1])  # key of another certificate
    for _ in range(2):
        with pytest.raises(UwlrError) as info:
            client_ssl_context(dataclasses.replace(conn, identity=broken))
        assert info.value.kind == "tls"
    for i in range(uwlr_transport.CONTEXTS_KEPT):
        fresh = make_cert((kit.ca.cert, kit.ca.key), f"client-{i}", server=False)
        extra = dataclasses.replace(conn.identity, cert_pem=fresh[0], key_pem=fresh[1])
        client_ssl_context(dataclasses.replace(conn, identity=extra))
    assert client_ssl_context(conn) is not first  # the oldest was let go
