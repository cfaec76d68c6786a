"""The engine probes of ``roost doctor``, run as ``python -m roost.doctor._probe KIND TARGET``.

Each probe loads one embedded model in a process of its own and makes it work a little (a
few generated tokens, one embedding), then prints one JSON line: ``{"detail": "..."}`` on
success, ``{"error": "..."}`` on a failure roost reports. A native crash (a llama.cpp build
for another CPU segfaults in ``decode``) kills only this process; the doctor names it.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from roost.protocol import ChatMessage, ChatRequest, RoostError
from roost.stores import ModelRecord


async def _chat(target: str) -> str:
    from roost.engines import LlamaCppEngine

    engine = LlamaCppEngine(seed=0, temperature=0.0)
    model = ModelRecord(name="probe", kind="chat", engine="llama-cpp", target=target)
    try:
        started = time.perf_counter()
        await engine.load(model)
        loaded = time.perf_counter()
        request = ChatRequest(
            model="probe", messages=[ChatMessage(role="user", content="Say hello.")], max_tokens=8
        )
        result = await engine.chat(model, request)
        done = time.perf_counter()
    finally:
        await engine.close()
    tokens = result.usage.completion_tokens if result.usage else 0
    return (
        f"loaded in {loaded - started:.1f}s, generated {tokens} tokens in "
        f"{done - loaded:.2f}s ({tokens / max(done - loaded, 1e-9):.0f} tokens/s); "
        f"llama.cpp CPU features: {_cpu_features()}"
    )


def _cpu_features() -> str:
    """The CPU features the loaded llama.cpp build uses (``AVX2 FMA ...``)."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode(errors="replace")
    on = [  # "CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 0 | ..." -> "SSE3 AVX2"
        part.split("=")[0].split(":")[-1].strip()
        for part in info.replace("|", "\n").splitlines()
        if part.strip().endswith("= 1")
    ]
    return " ".join(on) or info.strip()


async def _embed(target: str) -> str:
    from roost.engines import SentenceTransformerEngine

    engine = SentenceTransformerEngine()
    model = ModelRecord(
        name="probe", kind="embedding", engine="sentence-transformers", target=target
    )
    try:
        started = time.perf_counter()
        result = await engine.embed(model, ["roost doctor"])
        done = time.perf_counter()
    finally:
        await engine.close()
    return f"one {result.dimension}-dimension embedding in {done - started:.1f}s (load included)"


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("chat", "embed"):
        print("usage: python -m roost.doctor._probe chat|embed TARGET", file=sys.stderr)
        return 2
    kind, target = argv
    out: dict[str, Any]
    try:
        detail = asyncio.run(_chat(target) if kind == "chat" else _embed(target))
        out = {"detail": detail}
    except RoostError as exc:
        out = {"error": exc.message}
    except Exception as exc:  # the doctor reports anything, it never shows a traceback
        out = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(out), flush=True)
    return 0 if "detail" in out else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
