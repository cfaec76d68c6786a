"""Embedded engines in a child process (``IsolatedEngine``): same answers as in-process,
streaming, cancellation, errors crossing with their class and code, and a native crash (a
real signal sent to the real engine process) that fails the calls in flight with a clear,
retryable error while the next call runs on a fresh process.

The fast tests run the real host program with a small wrapper that patches its engine (a
host that prints to fd 1, one that dies while loading a model, one that cannot start); the
``model`` tests run SmolLM2 (llama-cpp) and MiniLM (sentence-transformers) from their wheels.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from roost.config import Settings
from roost.engines import (
    ENGINE_CRASH_LOOP,
    ENGINE_START_FAILED,
    EngineSet,
    IsolatedEngine,
    LlamaCppEngine,
    SentenceTransformerEngine,
)
from roost.protocol import (
    ChatMessage,
    ChatRequest,
    InvalidRequestError,
    NotFoundError,
    RoostError,
    ServiceTimeoutError,
    UpstreamError,
)
from roost.stores._records import ModelRecord

pytestmark = pytest.mark.processes  # agent servers, installers, engine hosts


def chat(text: str, max_tokens: int = 16, temperature: float = 0.0) -> ChatRequest:
    return ChatRequest(
        model="m",
        messages=[ChatMessage(role="user", content=text)],
        max_tokens=max_tokens,
        temperature=temperature,
    )


def gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie waiting for its reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


async def wait_gone(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if gone(pid):
            return True
        await asyncio.sleep(0.05)
    return False


# A host whose engine misbehaves on purpose: the real host program (`main`) with its engine
# patched: `list_models` prints to fd 1 like a native library would (bytes that look like a
# frame header), loading a model whose file is named crash*.gguf dies of SIGABRT.
PATCHED_HOST = textwrap.dedent(
    """
    import os, signal, sys
    import roost.engines._host as host

    real = host.make_engine

    def make_engine(name, options):
        engine = real(name, options)
        list_models, load = engine.list_models, engine.load

        async def noisy_list_models():
            os.write(1, b"\\x00\\x00\\x00\\x08native chatter on fd 1\\n")
            print("a python print in the host")
            return await list_models()

        async def fatal_load(model):
            if os.path.basename(model.target).startswith("crash"):
                os.kill(os.getpid(), signal.SIGABRT)
            return await load(model)

        engine.list_models, engine.load = noisy_list_models, fatal_load
        return engine

    host.make_engine = make_engine
    sys.exit(host.main(sys.argv[sys.argv.index("roost.engines._host") + 1 :]))
    """
)


@pytest.fixture
def patched_python(tmp_path: Path) -> list[str]:
    script = tmp_path / "patched_host.py"
    script.write_text(PATCHED_HOST)
    return [sys.executable, str(script)]


@pytest.fixture
async def patched(patched_python: list[str]) -> AsyncIterator[IsolatedEngine]:
    engine = IsolatedEngine("llama-cpp", python=patched_python, backoff_s=0.05)
    yield engine
    await engine.close()


# --- wiring ---------------------------------------------------------------------------------


def test_engine_set_isolates_the_embedded_engines_unless_told_not_to() -> None:
    isolated = EngineSet(n_ctx=1024, seed=5, threads=2)
    llama = isolated.get("llama-cpp")
    assert isinstance(llama, IsolatedEngine) and llama.name == "llama-cpp"
    assert llama.options == {"n_ctx": 1024, "n_threads": 2, "seed": 5}
    st = isolated.get("sentence-transformers")
    assert isinstance(st, IsolatedEngine) and st.options == {"threads": 2}
    assert llama.pid is None and st.pid is None  # nothing started before the first call
    inprocess = EngineSet(isolate=False)
    assert isinstance(inprocess.get("llama-cpp"), LlamaCppEngine)
    assert isinstance(inprocess.get("sentence-transformers"), SentenceTransformerEngine)


def test_the_isolate_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(home=tmp_path).engines.isolate is True
    assert EngineSet.from_settings(Settings(home=tmp_path)).isolate is True
    monkeypatch.setenv("ROOST_ENGINES__ISOLATE", "false")
    monkeypatch.setenv("ROOST_ENGINES__START_TIMEOUT_S", "7")
    engines = EngineSet.from_settings(Settings(home=tmp_path))
    assert engines.isolate is False and engines.start_timeout_s == 7
    assert isinstance(engines.get("llama-cpp"), LlamaCppEngine)


# --- the channel, errors, start failures (no model needed) ------------------------------------


async def test_errors_cross_with_their_class_code_and_details() -> None:
    engine = IsolatedEngine("llama-cpp")
    try:
        missing = ModelRecord(name="nope", kind="chat", engine="llama-cpp", target="/nope.gguf")
        with pytest.raises(NotFoundError, match="no GGUF file") as info:
            await engine.chat(missing, chat("hi"))
        assert info.value.code == "not_found" and not info.value.retryable
        assert info.value.details == {"model": "nope", "engine": "llama-cpp"}
        pid = engine.pid
        assert pid is not None and pid != os.getpid()
        with pytest.raises(InvalidRequestError, match="at least one message"):
            await engine.chat(missing, ChatRequest(model="m", messages=[]))
        assert engine.pid == pid  # errors are answers: the host lives on
        assert engine.restarts == 0
    finally:
        await engine.close()
    assert await wait_gone(pid)  # close stops the host


async def test_native_output_on_stdout_does_not_corrupt_the_channel(
    patched: IsolatedEngine,
) -> None:
    with pytest.raises(NotFoundError):  # starts the host
        await patched.load(ModelRecord(name="x", kind="chat", engine="llama-cpp", target="/no"))
    for _ in range(3):
        assert isinstance(await patched.list_models(), list)
    assert patched.restarts == 0
    child = patched._child
    assert child is not None
    for _ in range(100):  # the stderr reader thread may lag a little
        if "a python print in the host" in child.stderr:
            break
        await asyncio.sleep(0.05)
    assert any("native chatter on fd 1" in line for line in child.stderr)  # went to the log


async def test_a_host_that_cannot_start_is_a_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken-python"
    broken.write_text(
        "#!/bin/sh\necho \"ModuleNotFoundError: No module named 'roost'\" >&2\nexit 1\n"
    )
    broken.chmod(0o755)
    model = ModelRecord(name="m", kind="chat", engine="llama-cpp", target="/x.gguf")
    engine = IsolatedEngine("llama-cpp", python=[str(broken)])
    started = time.monotonic()
    with pytest.raises(RoostError) as info:
        await engine.chat(model, chat("hi"))
    assert time.monotonic() - started < 5
    assert info.value.code == ENGINE_START_FAILED and not info.value.retryable
    message = str(info.value)
    assert "llama-cpp engine process" in message and "exited with code 1" in message
    assert "before it was ready" in message and "No module named 'roost'" in message
    await engine.close()

    nowhere = IsolatedEngine("llama-cpp", python=[str(tmp_path / "no-such-python")])
    with pytest.raises(RoostError, match="cannot run .*no-such-python") as info:
        await nowhere.chat(model, chat("hi"))
    assert info.value.code == ENGINE_START_FAILED
    await nowhere.close()


async def test_a_host_that_never_gets_ready_times_out_and_is_killed(tmp_path: Path) -> None:
    stuck = tmp_path / "stuck-python"
    stuck.write_text("#!/bin/sh\nexec sleep 60\n")
    stuck.chmod(0o755)
    engine = IsolatedEngine("sentence-transformers", python=[str(stuck)], start_timeout_s=1.0)
    model = ModelRecord(name="e", kind="embedding", engine="sentence-transformers", target="/x")
    started = time.monotonic()
    with pytest.raises(ServiceTimeoutError, match="did not start within 1s") as info:
        await engine.embed(model, ["x"])
    assert time.monotonic() - started < 3 and info.value.retryable
    assert await wait_gone(info.value.details["pid"], 5)
    await engine.close()


async def test_a_model_that_kills_its_loader_is_blocked_after_three_crashes(
    patched: IsolatedEngine, tmp_path: Path
) -> None:
    gguf = tmp_path / "crash-on-load.gguf"
    gguf.write_bytes(b"GGUF not really")
    bad = ModelRecord(name="bad", kind="chat", engine="llama-cpp", target=str(gguf))
    pids = set()
    for attempt in (1, 2):
        with pytest.raises(UpstreamError) as crashed:
            await patched.chat(bad, chat("hi"))
        assert crashed.value.retryable, attempt
        assert f"died of SIGABRT while loading model 'bad' ({gguf})" in str(crashed.value)
        pids.add(crashed.value.details["pid"])
    with pytest.raises(RoostError) as info:
        await patched.chat(bad, chat("hi"))
    assert info.value.code == ENGINE_CRASH_LOOP and not info.value.retryable
    assert f"from {gguf} 3 times in a row" in str(info.value)
    pids.add(info.value.details["pid"])
    assert len(pids) == 3  # a fresh host each time
    # from now on it fails at once, without a host
    started = time.monotonic()
    with pytest.raises(RoostError, match="3 times in a row") as info:
        await patched.chat(bad, chat("hi"))
    assert info.value.code == ENGINE_CRASH_LOOP and time.monotonic() - started < 0.5
    assert patched.pid is None
    # other models still work (here: answer with their own error), and so does a fixed file
    with pytest.raises(NotFoundError):
        await patched.chat(
            ModelRecord(name="o", kind="chat", engine="llama-cpp", target="/o"), chat("x")
        )
    gguf.write_bytes(b"GGUF changed, still crashing")
    with pytest.raises(UpstreamError, match="while loading model 'bad'"):
        await patched.chat(bad, chat("hi"))


def test_the_host_exits_when_its_parent_is_killed(tmp_path: Path) -> None:
    parent = textwrap.dedent(
        """
        import asyncio, sys
        from roost.engines import IsolatedEngine
        from roost.protocol import NotFoundError
        from roost.stores._records import ModelRecord

        async def main():
            engine = IsolatedEngine("llama-cpp")
            missing = ModelRecord(name="x", kind="chat", engine="llama-cpp", target="/no")
            try:
                await engine.load(missing)
            except NotFoundError:
                pass
            print(engine.pid, flush=True)
            await asyncio.sleep(60)

        asyncio.run(main())
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        host = int(proc.stdout.readline())
        assert not gone(host)
        proc.kill()  # SIGKILL: no cleanup code of the parent runs
        proc.wait(10)
        assert asyncio.run(wait_gone(host, 10)), "the host outlived its parent"
    finally:
        proc.kill()


# --- real models --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def isolated_llama() -> Iterator[IsolatedEngine]:
    # one host for the module's tests, although each test runs its own event loop
    engine = IsolatedEngine("llama-cpp", {"n_ctx": 2048, "seed": 7})
    yield engine
    asyncio.run(engine.close())


LONG = chat("Write a very long story about a dragon and a knight.", 1500, 0.8)


@pytest.mark.model
async def test_isolated_chat_matches_in_process(
    isolated_llama: IsolatedEngine, smollm2: ModelRecord
) -> None:
    local = LlamaCppEngine(n_ctx=2048, seed=7)
    try:
        for text in ("What is the capital of France?", "Name three colors."):
            request = chat(text)
            tokens: list[str] = []
            local_tokens: list[str] = []

            async def on_token(piece: str, into: list[str] = tokens) -> None:
                into.append(piece)

            async def on_local(piece: str, into: list[str] = local_tokens) -> None:
                into.append(piece)

            streamed = await isolated_llama.chat(smollm2, request, on_token=on_token)
            expected = await local.chat(smollm2, request, on_token=on_local)
            assert streamed == expected
            assert tokens == local_tokens and len(tokens) > 1
            assert "".join(tokens) == streamed.message.content
            assert await isolated_llama.chat(smollm2, request) == expected
    finally:
        await local.close()
    assert await isolated_llama.list_models() == [smollm2.target]


@pytest.mark.model
async def test_concurrent_calls_run_and_the_channel_stays_responsive(
    isolated_llama: IsolatedEngine, smollm2: ModelRecord
) -> None:
    requests = [chat(f"Say a word about {topic}.", 8) for topic in ("cats", "rain", "bread")]
    sequential = [await isolated_llama.chat(smollm2, r) for r in requests]
    assert await asyncio.gather(*(isolated_llama.chat(smollm2, r) for r in requests)) == sequential
    # while a long generation streams, other calls on the same host are answered at once
    first = asyncio.Event()

    async def on_token(piece: str) -> None:
        first.set()

    story = asyncio.create_task(isolated_llama.chat(smollm2, LONG, on_token=on_token))
    await asyncio.wait_for(first.wait(), 30)
    started = time.monotonic()
    assert await isolated_llama.list_models() == [smollm2.target]
    assert time.monotonic() - started < 1
    story.cancel()
    with pytest.raises(asyncio.CancelledError):
        await story


@pytest.mark.model
async def test_cancelling_a_streamed_call_stops_generating(
    isolated_llama: IsolatedEngine, smollm2: ModelRecord
) -> None:
    await isolated_llama.load(smollm2)
    pid = isolated_llama.pid
    tokens: list[str] = []

    async def on_token(piece: str) -> None:
        tokens.append(piece)

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(isolated_llama.chat(smollm2, LONG, on_token=on_token), 1.0)
    count = len(tokens)
    assert count > 0
    # the model's thread in the host is free again at once, not after 1500 tokens
    started = time.monotonic()
    result = await isolated_llama.chat(smollm2, chat("Hi", 8))
    assert time.monotonic() - started < 3 and result.usage.completion_tokens > 0
    assert len(tokens) == count  # nothing more arrived for the cancelled call
    assert isolated_llama.pid == pid  # no restart involved


@pytest.mark.model
async def test_a_segfault_mid_stream_is_a_clear_error_and_the_engine_restarts(
    isolated_llama: IsolatedEngine, smollm2: ModelRecord
) -> None:
    expected = await isolated_llama.chat(smollm2, chat("Name three colors."))
    pid = isolated_llama.pid
    assert pid is not None
    tokens: list[str] = []
    streaming = asyncio.Event()

    async def on_token(piece: str) -> None:
        tokens.append(piece)
        if len(tokens) >= 3:
            streaming.set()

    story = asyncio.create_task(isolated_llama.chat(smollm2, LONG, on_token=on_token))
    other = asyncio.create_task(isolated_llama.chat(smollm2, chat("Say hello.")))  # queued
    await asyncio.wait_for(streaming.wait(), 30)
    os.kill(pid, signal.SIGSEGV)
    started = time.monotonic()
    for task in (story, other):
        with pytest.raises(UpstreamError) as info:
            await asyncio.wait_for(task, 5)
        error = info.value
        assert error.retryable and error.code == "upstream_error"
        assert str(error).startswith(
            f"the llama-cpp engine process (pid {pid}) died of SIGSEGV while serving model "
            "'smollm2'; it is restarted on the next call"
        ), str(error)
        assert error.details["signal"] == "SIGSEGV" and error.details["models"] == ["smollm2"]
    assert time.monotonic() - started < 5
    assert await wait_gone(pid, 5)
    # the next call starts a fresh host, which loads the model again
    again = await isolated_llama.chat(smollm2, chat("Name three colors."))
    assert again == expected
    assert isolated_llama.pid not in (None, pid)
    assert isolated_llama.restarts >= 1


@pytest.mark.model
async def test_the_embedding_engine_isolated(minilm: ModelRecord) -> None:
    texts = ["A cat is sleeping on the sofa.", "The central bank raised interest rates."]
    engine = IsolatedEngine("sentence-transformers")
    local = SentenceTransformerEngine()
    try:
        assert await engine.load(minilm) == 384
        result = await engine.embed(minilm, texts)
        expected = await local.embed(minilm, texts)
        assert result.dimension == 384 and result.usage == expected.usage
        for got, want in zip(result.vectors, expected.vectors, strict=True):
            assert got == pytest.approx(want, abs=1e-5)
        assert (await engine.embed(minilm, [])).vectors == []
        # concurrent calls, then a kill (as the OOM killer would) in the middle of a big batch
        assert len(await asyncio.gather(*(engine.embed(minilm, texts) for _ in range(4)))) == 4
        pid = engine.pid
        assert pid is not None
        batch = [f"sentence {i} about a cat asleep on a warm sofa" for i in range(3000)]
        big = asyncio.create_task(engine.embed(minilm, batch))
        await asyncio.sleep(0.5)
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(UpstreamError) as info:
            await asyncio.wait_for(big, 5)
        assert info.value.retryable
        assert f"sentence-transformers engine process (pid {pid}) died of SIGKILL" in str(
            info.value
        )
        assert "'minilm'" in str(info.value)
        again = await engine.embed(minilm, texts)
        assert again.vectors[0] == pytest.approx(expected.vectors[0], abs=1e-5)
        assert engine.pid not in (None, pid)
    finally:
        await engine.close()
        await local.close()
