"""gRPC with security against without, in the same run: ``registry.get_agent`` through
roost's client against one server process serving the same registry twice, on a plaintext
port and on an mTLS port that checks node credentials on every call.

    .venv/bin/python benchmarks/rpc_security.py [--n 4000] [--rounds 8]

Prints p50/p90/p99 per path and the ratio secured / plaintext. Calls go one at a time
(latency, not throughput); the paths alternate in rounds so background load hits both.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _machine import cpu_model

from roost.config import RpcSecurityConfig
from roost.rpc import (
    PLAINTEXT,
    RegistryServicer,
    RemoteRegistryStore,
    RpcSecurity,
    RpcServer,
    wait_healthy,
    write_cluster_credentials,
)
from roost.stores import open_stores

ROOT = Path(__file__).resolve().parent.parent


async def serve(home: Path) -> None:
    """The child: one registry, served plaintext and secured; prints both ports."""
    stores = await open_stores(f"sqlite:///{home / 'roost.db'}", home)
    await stores.registry.put_agent("bench", 1, {"name": "bench"}, str(home))
    configs = write_cluster_credentials(home / "pki", ["server", "client"])
    plain = RpcServer([RegistryServicer(stores.registry)])
    secured = RpcServer(
        [RegistryServicer(stores.registry)], security=RpcSecurity.load(configs["server"])
    )
    await plain.start()
    await secured.start()
    print(f"{plain.port} {secured.port}", flush=True)
    await asyncio.Event().wait()


async def p50s(registry: RemoteRegistryStore, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter_ns()
        await registry.get_agent("bench")
        samples.append((time.perf_counter_ns() - started) / 1000)
    return samples


async def measure(
    plain_port: str, secured_port: str, client: RpcSecurity, args: argparse.Namespace
) -> dict[str, list[float]]:
    paths = {
        "plaintext": RemoteRegistryStore(f"127.0.0.1:{plain_port}", security=PLAINTEXT),
        "mTLS + node credential": RemoteRegistryStore(f"127.0.0.1:{secured_port}", security=client),
    }
    await wait_healthy(f"127.0.0.1:{plain_port}", timeout_s=10)
    samples: dict[str, list[float]] = {name: [] for name in paths}
    for registry in paths.values():
        await p50s(registry, 300)  # warm up: channels, handshakes
    for _ in range(args.rounds):
        for name, registry in paths.items():
            gc.collect()
            samples[name] += await p50s(registry, args.n // args.rounds)
    for registry in paths.values():
        await registry.close()
    return samples


def main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        child = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(home)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert child.stdout is not None
            plain_port, secured_port = child.stdout.readline().split()
            client = RpcSecurity.load(_client_config(home))
            samples = asyncio.run(measure(plain_port, secured_port, client, args))
        finally:
            child.kill()
            child.wait()
    print(f"machine: {cpu_model()}; n={args.n} rounds={args.rounds}")
    print(f"{'path':<26} {'p50 µs':>8} {'p90 µs':>8} {'p99 µs':>8}")
    for name, values in samples.items():
        q = statistics.quantiles(values, n=100)
        print(f"{name:<26} {statistics.median(values):>8.1f} {q[89]:>8.1f} {q[98]:>8.1f}")
    ratio = statistics.median(samples["mTLS + node credential"]) / statistics.median(
        samples["plaintext"]
    )
    print(f"ratio p50 secured / plaintext: {ratio:.2f}x")
    return 0


def _client_config(home: Path) -> RpcSecurityConfig:
    """The client's [security] as the child wrote it (same directory, no cluster key)."""
    pki = home / "pki"
    return RpcSecurityConfig(
        ca_file=pki / "ca.pem", cert_file=pki / "client.pem", key_file=pki / "client-key.pem",
        mtls=True, credential_file=pki / "client.credential",
    )  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    if parsed.serve is not None:
        asyncio.run(serve(parsed.serve))
    else:
        sys.exit(main(parsed))
