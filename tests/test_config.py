"""Configuration: defaults, TOML file, ROOST_* overrides, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from roost.config import ConfigError, load_settings


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ROOST_HOME", str(tmp_path))
    monkeypatch.delenv("ROOST_CONFIG", raising=False)
    return tmp_path


def test_defaults(home: Path) -> None:
    s = load_settings()
    assert s.home == home
    assert s.bus.backend == "memory"
    assert s.database_url == f"sqlite:///{home / 'roost.db'}"
    assert s.inference.default_model == "smollm2"


def test_file_then_env_override(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (home / "config.toml").write_text(
        '[bus]\nbackend = "nats"\nurl = "nats://h:1"\n[runtime]\nmax_turns = 3\n'
    )
    s = load_settings()
    assert (s.bus.backend, s.bus.url, s.runtime.max_turns) == ("nats", "nats://h:1", 3)
    monkeypatch.setenv("ROOST_BUS__URL", "nats://other:2")
    monkeypatch.setenv("ROOST_RUNTIME__MAX_TURNS", "5")
    s = load_settings()
    assert (s.bus.url, s.runtime.max_turns) == ("nats://other:2", 5)


def test_explicit_config_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "elsewhere.toml"
    path.write_text('[log]\nlevel = "DEBUG"\n')
    monkeypatch.setenv("ROOST_CONFIG", str(path))
    assert load_settings().log.level == "DEBUG"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[bus]\nbakend = "nats"\n', "bus.bakend: Extra inputs are not permitted"),
        ('[bus]\nbackend = "kafka"\n', "bus.backend: Input should be 'memory' or 'nats'"),
        ("[runtime]\nrequest_timeout_s = 0\n", "runtime.request_timeout_s"),
        ("colour = 1\n", "colour"),
        ("[bus\n", "not valid TOML"),
    ],
)
def test_bad_file_names_file_and_key(home: Path, text: str, expected: str) -> None:
    (home / "config.toml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(home / "config.toml") in str(info.value)
    assert expected in str(info.value)


def test_bad_env_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROOST_BUS__BACKEND", "carrier-pigeon")
    with pytest.raises(ConfigError, match=r"environment: .*bus.backend"):
        load_settings()


def test_distributed_workers_defaults_and_overrides(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from roost.config import WORKER_ROLES

    s = load_settings()
    assert s.distributed.workers == {r: 0 if r == "projection" else 1 for r in WORKER_ROLES}
    assert (s.distributed.address("registry"), s.distributed.port("catalog")) == (
        "127.0.0.1:9090",
        9094,
    )
    (home / "config.toml").write_text("[distributed.workers]\ninference = 4\nkv = 0\n")
    s = load_settings()
    assert (s.distributed.workers["inference"], s.distributed.workers["kv"]) == (4, 0)
    assert s.distributed.workers["registry"] == 1  # unnamed roles keep their default
    monkeypatch.setenv("ROOST_DISTRIBUTED__WORKERS__INFERENCE", "2")
    assert load_settings().distributed.workers["inference"] == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[distributed.workers]\ngpu = 1\n", "unknown worker role(s) 'gpu' (roles: registry,"),
        ("[distributed.workers]\nkv = -1\n", "kv = -1: a worker count is a whole number >= 0"),
        (
            "[distributed.workers]\nkv = 1.5\n",
            "kv = 1.5: a worker count is a whole number >= 0",
        ),
        ('[distributed]\nregistry = "nohost"\n', "'nohost' is not host:port"),
        ("[distributed]\nheartbeat_s = 0\n", "distributed.heartbeat_s"),
    ],
)
def test_bad_distributed_config(home: Path, text: str, expected: str) -> None:
    (home / "config.toml").write_text(text)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert str(home / "config.toml") in str(err.value)
    assert expected in str(err.value)


def test_client_settings(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from roost.config import load_client_settings

    assert not load_client_settings().remote  # no file, no env: local mode
    (home / "client.toml").write_text('harness = "control:9091"\nsecret = "vault:7000"\n')
    client = load_client_settings()
    assert client.remote
    assert client.address("registry") == "control:9090"  # the harness host, default port
    assert client.address("secret") == "vault:7000"
    monkeypatch.setenv("ROOST_CLIENT__HARNESS", "other:1")
    assert load_client_settings().address("catalog") == "other:9094"
    (home / "client.toml").write_text('harness = "nope"\n')
    monkeypatch.delenv("ROOST_CLIENT__HARNESS")
    with pytest.raises(ConfigError, match=r"client.toml: invalid client configuration: harness"):
        load_client_settings()
