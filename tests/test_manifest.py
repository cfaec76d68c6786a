"""agent.toml parsing: valid manifests load; every kind of mistake names file, field, problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from roost.agents import ManifestError, load_manifest, parse_manifest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "agent.toml").write_text(text)
    return tmp_path


@pytest.mark.parametrize("example", ["hello-chat", "retrieval", "process-agent"])
def test_examples_are_valid(example: str) -> None:
    manifest = load_manifest(EXAMPLES / example)
    assert manifest.name == example


def test_chat_manifest_defaults_and_tool_shorthand(tmp_path: Path) -> None:
    m = load_manifest(write(tmp_path, 'name = "a"\nruntime = "chat"\ntools = ["calculator"]\n'))
    assert m.runtime == "chat"
    assert [t.name for t in m.tools] == ["calculator"]
    assert m.services_used == {"infer", "tool"}


def test_process_command_forms() -> None:
    assert parse_manifest({"name": "p", "runtime": "process", "entry": "node a.js"}).command == [
        "node",
        "a.js",
    ]
    assert parse_manifest({"name": "p", "runtime": "process", "entry": ["x", "a b"]}).command == [
        "x",
        "a b",
    ]


@pytest.mark.parametrize(
    ("text", "field", "problem"),
    [
        ('name = "a"\nruntime = "chat"\ncolour = 1\n', "colour", "unknown field"),
        ('name = "a"\n', "runtime", "required field is missing"),
        ('name = "a"\nruntime = "java"\n', "runtime", "'python', 'process' or 'chat'"),
        ('name = "Bad Name"\nruntime = "chat"\n', "name", "not a valid agent name"),
        ('name = "a"\nruntime = "python"\n', "entry", "module:function"),
        ('name = "a"\nruntime = "python"\nentry = "nocolon"\n', "entry", "module:function"),
        ('name = "a"\nruntime = "process"\n', "entry", "command"),
        ('name = "a"\nruntime = "chat"\nentry = "x:y"\n', "entry", "runs no code"),
        ('name = "a"\nruntime = "chat"\ntimeout_s = -1\n', "timeout_s", "greater than 0"),
        ('name = "a"\nruntime = "chat"\nservices = ["dns"]\n', "services.0", "'infer'"),
        (
            'name = "a"\nruntime = "chat"\n[[tools]]\nname = "t"\nentry = "bad"\n',
            "tools.0.entry",
            "module:function",
        ),
        ('name = "a"\nruntime = "chat"\n[models]\nchat = 3\n', "models.chat", "valid string"),
    ],
)
def test_bad_manifests_name_file_field_and_problem(
    tmp_path: Path, text: str, field: str, problem: str
) -> None:
    with pytest.raises(ManifestError) as info:
        load_manifest(write(tmp_path, text))
    err = info.value
    assert err.field == field
    assert problem in err.problem
    assert str(tmp_path / "agent.toml") in str(err)
    assert f"field '{field}'" in str(err)


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="not valid TOML"):
        load_manifest(write(tmp_path, "name = \n"))
    with pytest.raises(ManifestError, match="no agent.toml"):
        load_manifest(tmp_path / "nowhere")
