"""Agent bundles: deterministic packing, safe unpacking, and agents deployed on one machine
running from another machine's home (as on another node of a cluster)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from agent_helpers import make_agent
from roost.agents import BundleError, pack_folder, unpack_bundle
from roost.config import Settings
from roost.platform import Platform


def test_packing_is_deterministic_and_skips_caches(tmp_path: Path) -> None:
    folder = make_agent(tmp_path, "a", "async def run(ctx, input):\n    return 1\n")
    (folder / "data").mkdir()
    (folder / "data" / "notes.bin").write_bytes(bytes(range(256)))
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "agent.cpython-311.pyc").write_bytes(b"junk")
    (folder / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (folder / "run.sh").chmod(0o755)
    first = pack_folder(folder)
    (folder / "agent.py").touch()  # a newer mtime changes nothing
    assert pack_folder(folder) == first
    target = unpack_bundle(first, tmp_path / "out" / "v1")
    names = sorted(p.relative_to(target).as_posix() for p in target.rglob("*"))
    assert names == ["agent.py", "agent.toml", "data", "data/notes.bin", "run.sh"]
    assert (target / "data" / "notes.bin").read_bytes() == bytes(range(256))
    assert (target / "run.sh").stat().st_mode & 0o111  # still executable
    unpack_bundle(first, target)  # unpacking the same version again is fine
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]  # no leftovers


def _tar(*members: tarfile.TarInfo) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for member in members:
            tar.addfile(member, io.BytesIO(b"x" * member.size))
    return buffer.getvalue()


def test_unsafe_or_malformed_bundles_are_refused(tmp_path: Path) -> None:
    escape = tarfile.TarInfo("../outside.txt")
    escape.size = 1
    link = tarfile.TarInfo("link")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    for bundle, problem in [
        (_tar(escape), "outside"),
        (_tar(link), "not a file or folder"),
        (b"not a tarball", "malformed agent bundle"),
    ]:
        with pytest.raises(BundleError, match=problem):
            unpack_bundle(bundle, tmp_path / "v1")
        assert not (tmp_path / "v1").exists() and not (tmp_path / "outside.txt").exists()


async def test_an_agent_deployed_elsewhere_runs_from_the_registry_bundle(tmp_path: Path) -> None:
    """Two homes on one database, as two nodes share a registry: the second node has never
    seen the agent's folder and unpacks it from the bundle the first one deployed."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    folder = make_agent(
        tmp_path / "src",
        "helper",
        "from .lib import greet\nasync def run(ctx, input):\n    return greet(input)\n",
    )
    (folder / "lib.py").write_text("def greet(name):\n    return f'hello {name}'\n")

    def settings(home: str) -> Settings:
        return Settings(home=tmp_path / home, state={"url": url}, workflows={"engine": "inprocess"})

    async with await Platform.open(settings("node-a")) as a:
        record = await a.deploy(folder)
        assert record.path == str(tmp_path / "node-a" / "agents" / "helper" / "v1")
    async with await Platform.open(settings("node-b")) as b:
        result = await b.run("helper", "b")
        assert result.output == "hello b"
        local = tmp_path / "node-b" / "agents" / "helper" / "v1"
        assert (local / "lib.py").is_file()
        assert (await b.get_agent("helper")).path == str(local)
