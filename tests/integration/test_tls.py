"""rediss:// with a CA, a client certificate and a password, against a real TLS redis-server."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from coordinatord.errors import BackendError
from coordinatord.settings import BackendSettings
from coordinatord.store import RedisStore
from tests.support import free_tcp_port, short_tmpdir

pytestmark = pytest.mark.anyio

PASSWORD = "tls-test-password"


@dataclass
class TlsServer:
    port: int
    ca: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


@pytest.fixture(scope="module")
def tls_server() -> Iterator[TlsServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server (with TLS) is not installed")
    root = short_tmpdir("tls-")
    ca, other = trustme.CA(), trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    client_cert = ca.issue_cert("coordinatord-client")
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    other.cert_pem.write_to_path(str(root / "other-ca.pem"))
    server_cert.cert_chain_pems[0].write_to_path(str(root / "server.pem"))
    server_cert.private_key_pem.write_to_path(str(root / "server.key"))
    client_cert.cert_chain_pems[0].write_to_path(str(root / "client.pem"))
    client_cert.private_key_pem.write_to_path(str(root / "client.key"))
    port = free_tcp_port()
    args = [
        binary, "--port", "0", "--bind", "127.0.0.1", "--tls-port", str(port),
        "--tls-cert-file", str(root / "server.pem"), "--tls-key-file", str(root / "server.key"),
        "--tls-ca-cert-file", str(root / "ca.pem"), "--tls-auth-clients", "yes",
        "--requirepass", PASSWORD, "--save", "", "--appendonly", "no", "--dir", str(root),
    ]  # fmt: skip
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert process.stdout is not None
    for line in process.stdout:
        if b"Ready to accept connections" in line:
            break
        if b"Failed" in line or b"Missing implement" in line:
            process.kill()
            process.wait()
            process.stdout.close()
            pytest.skip(f"redis-server has no TLS support: {line.decode(errors='replace').strip()}")
    try:
        yield TlsServer(
            port, root / "ca.pem", root / "client.pem", root / "client.key", root / "other-ca.pem"
        )
    finally:
        process.terminate()
        process.communicate(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


def settings_for(server: TlsServer, ca: Path) -> BackendSettings:
    return BackendSettings(
        tls_ca_file=ca,
        tls_cert_file=server.client_cert,
        tls_key_file=server.client_key,
        timeout_s=2.0,
        retries=0,
    )


async def test_tls_with_ca_client_cert_and_password(tls_server: TlsServer) -> None:
    """A rediss:// URL with the right CA, client certificate and password works."""
    url = f"rediss://:{PASSWORD}@127.0.0.1:{tls_server.port}/0"
    store = RedisStore.from_url(url, settings_for(tls_server, tls_server.ca))
    try:
        await store.set("tls:key", "over tls", 60)
        assert await store.get("tls:key") == "over tls"
        assert "***" in store.name and PASSWORD not in store.name
    finally:
        await store.aclose()


async def test_tls_refuses_a_server_signed_by_an_unknown_ca(tls_server: TlsServer) -> None:
    """Trusting another CA makes the connection fail with an error, never silently succeed."""
    url = f"rediss://:{PASSWORD}@127.0.0.1:{tls_server.port}/0"
    store = RedisStore.from_url(url, settings_for(tls_server, tls_server.other_ca))
    try:
        with pytest.raises(BackendError, match=f"127.0.0.1:{tls_server.port}") as caught:
            await store.ping()
        assert caught.value.kind == "tls"
        assert "backend.tls_ca_file" in str(caught.value)
    finally:
        await store.aclose()
