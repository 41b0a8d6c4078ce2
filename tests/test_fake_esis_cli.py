"""`esis-sync fake-esis` as a real process: its server certificate is valid for the names it
is given, so the compose stack's api can reach it as https://fake-esis:8443 (issue found in a
compose trial on a bridge network, where the certificate named only 127.0.0.1/localhost)."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.server import ROOT, esis_sync_command, free_port

HOST = "127.0.0.1"


@pytest.fixture
def fake_esis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    port = free_port()
    directory = tmp_path / "fake-esis"
    process = subprocess.Popen(
        [
            esis_sync_command(),
            "fake-esis",
            "--port",
            str(port),
            "--directory",
            str(directory),
            "--name",
            "fake-esis",
        ],
        cwd=ROOT,
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection((HOST, port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    assert process.stderr is not None
                    pytest.fail(f"fake-esis did not start: {process.stderr.read()!r}")
                time.sleep(0.1)
        yield port, directory
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)


def _handshake(port: int, directory: Path, name: str) -> None:
    context = ssl.create_default_context(cafile=str(directory / "ca.pem"))
    context.load_cert_chain(str(directory / "client.pem"), str(directory / "client.key"))
    with (
        socket.create_connection((HOST, port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=name),
    ):
        pass


def test_the_fake_esis_certificate_is_valid_for_the_names_it_is_given(
    fake_esis: tuple[int, Path],
) -> None:
    port, directory = fake_esis
    for name in ("fake-esis", "localhost", HOST):
        _handshake(port, directory, name)
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(port, directory, "esis.example.org")
