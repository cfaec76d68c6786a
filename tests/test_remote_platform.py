"""The platform seen from a client: every CLI-facing operation over real gRPC servers (the
five coordination services) in front of a real local platform."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent_helpers import COUNTER, make_agent
from roost.config import ClientSettings, Settings
from roost.platform import Platform, RemotePlatform, coordination_servicers
from roost.protocol import EventMessage, InvalidRequestError, NotFoundError
from roost.rpc import RpcServer

ROLES = ["registry", "state", "secret", "catalog", "harness"]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Platform, str]]:
    """A local platform whose coordination services answer on one loopback port."""
    settings = Settings(home=tmp_path / "server", workflows={"engine": "inprocess"})
    async with (
        await Platform.open(settings) as platform,
        RpcServer(coordination_servicers(platform, ROLES, node="n1")) as server,
    ):
        yield platform, f"127.0.0.1:{server.port}"


def client_for(address: str) -> ClientSettings:
    return ClientSettings(**{role: address for role in ROLES}, timeout_s=5)


async def test_agents_runs_and_sessions_through_the_services(
    served: tuple[Platform, str], tmp_path: Path
) -> None:
    _, address = served
    folder = make_agent(
        tmp_path / "client",
        "counter",
        COUNTER.replace(
            "    return count", "    await ctx.emit('counted', n=count)\n    return count"
        ),
    )
    async with RemotePlatform(client_for(address)) as remote:
        record = await remote.deploy(folder)
        assert (record.name, record.version) == ("counter", 1)
        assert [a.name for a in await remote.list_agents()] == ["counter"]
        events: list[EventMessage] = []
        first = await remote.run("counter", None, on_event=events.append)
        assert first.ok and first.output == 1
        assert [e.data.get("n") for e in events if e.type == "progress"] == [1]
        second = await remote.run("counter", None, session=first.session.name)
        assert second.output == 2 and second.session.id == first.session.id
        nodes = await remote.session_nodes(first.session.name)
        assert nodes[0].kind == "invoke" and nodes[-1].kind == "complete"
        # fork before the second run: the new branch sees count == 1 again
        second_invoke = [n for n in nodes if n.kind == "invoke"][1]
        fork_point = nodes[nodes.index(second_invoke) - 1]
        branch = await remote.fork(first.session.name, fork_point.id[:12], "retry")
        again = await remote.run("counter", None, session=first.session.name, branch=branch.name)
        assert again.output == 2
        await remote.promote(first.session.name, "retry")
        assert (await remote.get_session(first.session.name)).main_branch == "retry"
        assert {b.name for b in await remote.list_branches(first.session.id)} == {
            "main",
            "retry",
        }
        [listed] = await remote.list_sessions()
        assert listed.id == first.session.id
        runs = await remote.harness.list_runs()
        assert len(runs) == 3 and {r.status for r in runs} == {"completed"}
        info = await remote.harness.get_run(second.complete.correlation_id)
        assert info.session == first.session.id
        await remote.delete_agent("counter")
        with pytest.raises(NotFoundError, match="agent 'counter' is not deployed"):
            await remote.run("counter", None)


async def test_models_secrets_and_errors_through_the_services(
    served: tuple[Platform, str], tmp_path: Path
) -> None:
    _, address = served
    async with RemotePlatform(client_for(address)) as remote:
        await remote.add_model(name="big", engine="ollama", target="llama3", base_url="http://x")
        assert "big" in [m.name for m in await remote.list_models()]
        with pytest.raises(InvalidRequestError, match="the openai engine needs --base-url"):
            await remote.add_model(name="o", engine="openai", target="gpt")
        await remote.remove_model("big")
        with pytest.raises(NotFoundError, match="unknown model 'big'"):
            await remote.remove_model("big")
        await remote.secrets.put("token", "s3cret")
        assert await remote.secrets.get("token") == "s3cret"
        assert [m.where for m in await remote.available_models("llama-cpp")] == ["embedded"]
        bad = make_agent(
            tmp_path / "client",
            "bad",
            "async def run(ctx, input):\n    return 1\n",
            extra='[models]\nchat = "nope"\n',
            services=("infer",),
        )
        # the error names the client's folder, not the server's scratch copy
        with pytest.raises(InvalidRequestError, match=rf"{bad}/agent.toml.*models.chat.*'nope'"):
            await remote.deploy(bad)


async def test_a_dead_harness_is_a_clear_error_not_a_hang() -> None:
    from roost.devservers import free_port
    from roost.protocol import RoostError

    async with RemotePlatform(client_for(f"127.0.0.1:{free_port()}")) as remote:
        with pytest.raises(RoostError, match=r"harness at 127\.0\.0\.1:\d+"):
            await remote.run("anything", None)


@pytest.mark.e2e
async def test_the_cli_talks_to_a_deployment(served: tuple[Platform, str], tmp_path: Path) -> None:
    """`roost` with ROOST_CLIENT__HARNESS set drives the deployment, not a local platform."""
    _, address = served
    folder = make_agent(tmp_path / "client", "counter", COUNTER)
    env = {
        **os.environ,
        "ROOST_HOME": str(tmp_path / "cli-home"),
        "NO_COLOR": "1",
        "COLUMNS": "200",
        **{f"ROOST_CLIENT__{role.upper()}": address for role in ROLES},
    }

    def roost(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "roost", *args],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    # the CLI process must not be the one doing the work: run it off this event loop
    import asyncio

    deployed = await asyncio.to_thread(roost, "agent", "deploy", str(folder))
    assert deployed.returncode == 0, deployed.stderr
    ran = await asyncio.to_thread(roost, "agent", "run", "counter", "-p", "go")
    assert ran.returncode == 0, ran.stderr
    assert "1" in ran.stdout
    listed = await asyncio.to_thread(roost, "session", "list")
    assert "counter" in listed.stdout
    assert not (tmp_path / "cli-home" / "roost.db").exists()  # no local platform was opened


async def test_a_worker_on_remote_stores_runs_agents_and_caches_model_lookups(
    served: tuple[Platform, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A platform whose registry, state and secrets are the gRPC services (as an agent or
    inference worker's): it runs agents, and asks the registry for a model once per few
    seconds, not once per call."""
    import roost.platform._models as local
    from roost.platform import remote_stores

    server, address = served
    greeter = "from .lib import hello\nasync def run(ctx, input):\n    return hello(input)\n"
    folder = make_agent(tmp_path / "src", "greeter", greeter, services=())
    (folder / "lib.py").write_text("def hello(name):\n    return f'hello {name}'\n")
    await server.deploy(folder)
    settings = Settings(
        home=tmp_path / "worker",
        workflows={"engine": "inprocess"},
        distributed={"registry": address, "state": address, "secret": address},
    )
    async with await Platform.open(settings, stores=remote_stores(settings)) as worker:
        assert worker.stores.db is None and worker.stores.kv is None
        assert (await worker.run("greeter", "you")).output == "hello you"  # from the bundle
        asked: list[str] = []
        real = worker.stores.registry.get_model

        async def counting(name: str):  # type: ignore[no-untyped-def]
            asked.append(name)
            return await real(name)

        monkeypatch.setattr(worker.stores.registry, "get_model", counting)
        for _ in range(3):
            assert (await worker.get_model("smollm2")).engine == "llama-cpp"
        assert asked == ["smollm2"]
        monkeypatch.setattr(local, "MODEL_CACHE_S", 0.0)
        await worker.get_model("smollm2")
        assert asked == ["smollm2", "smollm2"]
        with pytest.raises(NotFoundError, match="unknown model 'nope'"):
            await worker.get_model("nope")
