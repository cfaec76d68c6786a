"""TLS and node credentials on the gRPC coordination services, on a real grpc.aio server on
loopback with certificates made by roost itself. A TCP relay between client and server
records every byte, so "secrets never travel in clear" is checked on the wire."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from roost.config import ConfigError, RpcSecurityConfig
from roost.protocol import ErrorCode, RoostError
from roost.rpc import (
    PLAINTEXT,
    SERVICE_NAMES,
    RemoteSecretStore,
    RpcSecurity,
    RpcServer,
    SecretServicer,
    credential_node,
    node_credential,
    wait_healthy,
    write_cluster_credentials,
)
from roost.stores import Stores, open_stores

SECRET = "hunter2-the-secret-value-on-the-wire"


@pytest.fixture
async def sql(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Stores]:
    monkeypatch.delenv("ROOST_SECRET_KEY", raising=False)
    async with await open_stores(f"sqlite:///{tmp_path / 'roost.db'}", tmp_path) as stores:
        yield stores


class Relay:
    """A TCP relay on loopback that keeps a copy of everything it forwards."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.seen = bytearray()
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    self.seen.extend(data)
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))


@asynccontextmanager
async def secured(sql: Stores, security: RpcSecurity) -> AsyncIterator[RpcServer]:
    server = RpcServer([SecretServicer(sql.secrets)], security=security)
    await server.start()
    try:
        yield server
    finally:
        await server.stop(None)


def load(config: RpcSecurityConfig, **changes: object) -> RpcSecurity:
    return RpcSecurity.load(config.model_copy(update=changes))


async def test_tls_keeps_secrets_off_the_wire_and_plaintext_would_not(
    sql: Stores, tmp_path: Path
) -> None:
    nodes = write_cluster_credentials(tmp_path / "pki", ["server", "client"])
    for name in ["ca-key.pem", "cluster.key", "client-key.pem", "client.credential"]:
        assert stat.S_IMODE((tmp_path / "pki" / name).stat().st_mode) == 0o600, name
    async with secured(sql, RpcSecurity.load(nodes["server"])) as server:
        relay = Relay(server.port)
        async with (
            relay as address,
            RemoteSecretStore(
                address, security=load(nodes["client"], cluster_key_file=None)
            ) as secrets,
        ):
            await secrets.put("api-key", SECRET)
            assert await secrets.get("api-key") == SECRET
        assert relay.seen and SECRET.encode() not in relay.seen
    # the same calls in plaintext: the relay sees the value, so the check above can fail
    async with secured(sql, PLAINTEXT) as server:
        relay = Relay(server.port)
        async with relay as address, RemoteSecretStore(address) as secrets:
            assert await secrets.get("api-key") == SECRET
        assert SECRET.encode() in relay.seen


async def test_a_call_without_a_valid_node_credential_is_unauthenticated(
    sql: Stores, tmp_path: Path
) -> None:
    nodes = write_cluster_credentials(tmp_path / "pki", ["server", "client", "gone"])
    server_security = load(nodes["server"], mtls=False, revoked_nodes=["gone"])
    tls_only = load(nodes["client"], mtls=False, credential_file=None, cluster_key_file=None)
    forged_file = tmp_path / "forged.credential"
    forged_file.write_text(node_credential(b"x" * 48, "client"))
    cases = {
        "no credential": tls_only,
        "a forged credential": load(nodes["client"], mtls=False, credential_file=forged_file),
        "a revoked node's credential": load(nodes["gone"], mtls=False),
    }
    async with secured(sql, server_security) as server:
        # health stays open: probes learn only whether the service serves
        await wait_healthy(server.address, SERVICE_NAMES["secret"], 10, security=tls_only)
        for case, security in cases.items():
            async with RemoteSecretStore(server.address, security=security) as secrets:
                with pytest.raises(RoostError) as caught:
                    await secrets.exists("api-key")
                assert caught.value.code == ErrorCode.AUTH, case
                assert "node credential" in caught.value.message, case
        async with RemoteSecretStore(
            server.address, security=load(nodes["client"], mtls=False)
        ) as secrets:
            assert await secrets.exists("api-key") is False
        # a plaintext client cannot even talk to a TLS server
        async with RemoteSecretStore(server.address, timeout_s=2) as plain:
            with pytest.raises(RoostError):
                await plain.exists("api-key")


async def test_mtls_needs_a_client_certificate_of_the_ca(sql: Stores, tmp_path: Path) -> None:
    nodes = write_cluster_credentials(tmp_path / "pki", ["server", "client"])
    stranger = write_cluster_credentials(tmp_path / "other-pki", ["client"])["client"]
    async with secured(sql, RpcSecurity.load(nodes["server"])) as server:
        ok = load(nodes["client"])
        async with RemoteSecretStore(server.address, security=ok) as secrets:
            assert await secrets.exists("x") is False
        # the right credential and CA, but a certificate another CA signed
        other_cert = load(nodes["client"], cert_file=stranger.cert_file, key_file=stranger.key_file)
        async with RemoteSecretStore(server.address, security=other_cert, timeout_s=2) as c:
            with pytest.raises(RoostError):
                await c.exists("x")


def test_node_credentials_name_their_node_and_need_the_key() -> None:
    key = b"k" * 48
    credential = node_credential(key, "node-a.example")
    assert credential_node(key, credential) == "node-a.example"
    assert credential_node(b"j" * 48, credential) is None
    assert credential_node(key, credential.replace("node-a", "node-b")) is None
    assert credential_node(key, "garbage") is None
    with pytest.raises(ValueError):
        node_credential(key, "a:b")


def test_security_settings_errors_name_the_key(tmp_path: Path) -> None:
    nodes = write_cluster_credentials(tmp_path / "pki", ["n"])
    config = nodes["n"]
    with pytest.raises(ConfigError, match="ca_file: cannot read"):
        load(config, ca_file=tmp_path / "missing.pem")
    with pytest.raises(ConfigError, match="go together"):
        load(config, key_file=None)
    with pytest.raises(ConfigError, match="needs ca_file"):
        load(config, ca_file=None, mtls=False)
    short = tmp_path / "short.key"
    short.write_text("too short")
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        load(config, cluster_key_file=short)
    # a second call keeps the CA and key: the first nodes stay valid
    again = write_cluster_credentials(tmp_path / "pki", ["m"])["m"]
    assert again.ca_file == config.ca_file
    first, second = RpcSecurity.load(config), RpcSecurity.load(again)
    assert first.cluster_key == second.cluster_key and first.ca == second.ca


def test_roost_cluster_credentials_prints_each_nodes_table(tmp_path: Path) -> None:
    import subprocess
    import sys
    import tomllib

    from cli_helpers import ROOT, cli_env

    made = subprocess.run(
        [sys.executable, "-m", "roost", "cluster", "credentials", str(tmp_path / "pki"),
         "--node", "n1", "--node", "n2", "--host", "10.0.0.5"],
        env=cli_env(tmp_path / "home"), cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    chunks = made.stdout.split("# node ")[1:]  # "n1: its config.toml\n[distributed...]"
    tables = [tomllib.loads(chunk.split("\n", 1)[1]) for chunk in chunks]
    configs = [RpcSecurityConfig(**t["distributed"]["security"]) for t in tables]
    assert [c.credential_file.name for c in configs if c.credential_file] == [
        "n1.credential",
        "n2.credential",
    ]
    assert RpcSecurity.load(configs[0]).tls and "ca-key.pem here" in " ".join(made.stderr.split())
