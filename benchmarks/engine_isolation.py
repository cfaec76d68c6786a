"""What running the embedded engines in a child process costs, against in-process, in one run.

Both engines of a kind are loaded up front in this process (in-process) and in an engine host
child (``IsolatedEngine``), then measured alternately in ``--rounds`` rounds so background
load hits both alike:

  (a) SmolLM2 streamed generation: ``--tokens`` tokens greedily with ``on_token``; tokens/s
      from the call to its result, and the per-token difference;
  (b) a 1-token chat: the per-call cost (prompt evaluation included, the same on both);
  (c) ``list_models``, which does no engine work: the difference is the channel's round trip;
  (d) MiniLM: one short text, and a batch of 64 sentences.

Chat is measured first, then embeddings, each kind with only its own engines loaded.

    python benchmarks/engine_isolation.py --rounds 5 --tokens 128 --n 30
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import platform
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from _machine import cpu_model

from roost.engines import IsolatedEngine, LlamaCppEngine, SentenceTransformerEngine, default_models
from roost.protocol import ChatMessage, ChatRequest

PROMPT = "Write a long story about a lighthouse keeper who finds a message in a bottle."
SETTLE_S = 0.3  # idle between measurements, so spinning threads of the last one go to sleep
SENTENCES = [f"Sentence {i}: a cat sleeps on a warm sofa while the rain falls." for i in range(64)]


async def timed(call: Callable[[], Awaitable[Any]], n: int) -> list[float]:
    """Wall seconds of ``n`` sequential calls."""
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - started)
    return samples


async def stream_rate(engine: Any, model: Any, tokens: int) -> tuple[float, int]:
    """(tokens/s, callbacks) of one streamed generation of ``tokens`` tokens."""
    count = 0

    async def on_token(_: str) -> None:
        nonlocal count
        count += 1

    request = ChatRequest(
        model="m",
        messages=[ChatMessage(role="user", content=PROMPT)],
        max_tokens=tokens,
        temperature=0.0,
    )
    started = time.perf_counter()
    result = await engine.chat(model, request, on_token=on_token)
    wall = time.perf_counter() - started
    return result.usage.completion_tokens / wall, count


def one_token(engine: Any, model: Any) -> Callable[[], Awaitable[Any]]:
    request = ChatRequest(
        model="m", messages=[ChatMessage(role="user", content="Hi")], max_tokens=1
    )
    return lambda: engine.chat(model, request)


def ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128, help="tokens per streamed run")
    parser.add_argument("--n", type=int, default=30, help="calls per latency sample per round")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    args = parser.parse_args()
    models = {m.name: m for m in default_models()}
    if set(models) != {"smollm2", "minilm"}:
        raise SystemExit("the embedded models are not installed (scripts/setup.sh)")
    smollm2, minilm = models["smollm2"], models["minilm"]
    options: dict[str, Any] = {"n_ctx": 1024, "n_threads": args.threads, "seed": 0}
    chat: dict[str, Any] = {
        "in-process": LlamaCppEngine(**options),
        "isolated": IsolatedEngine("llama-cpp", options),
    }
    embed: dict[str, Any] = {
        "in-process": SentenceTransformerEngine(threads=args.threads),
        "isolated": IsolatedEngine("sentence-transformers", {"threads": args.threads}),
    }
    print(f"# {cpu_model()}, {platform.machine()}, {args.threads} threads")
    print(f"# {args.rounds} rounds; {args.tokens} streamed tokens; {args.n} calls per latency")
    figures: dict[str, dict[str, list[float]]] = {k: {} for k in chat}

    def add(name: str, key: str, values: list[float]) -> None:
        figures[name].setdefault(key, []).extend(values)

    # chat first, embeddings after (each kind alone: torch's and llama.cpp's spinning worker
    # threads would otherwise take CPU from whichever is measured next)
    try:
        for name in chat:
            await chat[name].load(smollm2)
            await stream_rate(chat[name], smollm2, 8)  # warm-up
        for round_no in range(args.rounds):
            for name in chat:
                await asyncio.sleep(SETTLE_S)
                rate, callbacks = await stream_rate(chat[name], smollm2, args.tokens)
                add(name, "stream_tok_s", [rate])
                await asyncio.sleep(SETTLE_S)
                single = await timed(one_token(chat[name], smollm2), args.n)
                add(name, "one_token_ms", single)
                print(
                    f"  round {round_no + 1} {name}: {rate:.1f} tok/s ({callbacks} callbacks), "
                    f"1-token chat {ms(single):.2f} ms",
                    flush=True,
                )
            for name in chat:
                add(name, "list_models_ms", await timed(chat[name].list_models, args.n * 10))
    finally:
        for engine in chat.values():
            await engine.close()
    try:
        for name in embed:
            await embed[name].load(minilm)
            await embed[name].embed(minilm, SENTENCES)  # warm-up
        for round_no in range(args.rounds):
            for name in embed:
                engine = embed[name]
                await asyncio.sleep(SETTLE_S)
                short = await timed(
                    functools.partial(engine.embed, minilm, ["hello world"]), args.n
                )
                add(name, "embed_short_ms", short)
                await asyncio.sleep(SETTLE_S)
                add(
                    name,
                    "embed_batch_ms",
                    await timed(functools.partial(engine.embed, minilm, SENTENCES), 3),
                )
                print(f"  round {round_no + 1} {name}: embed {ms(short):.2f} ms", flush=True)
    finally:
        for engine in embed.values():
            await engine.close()

    base, iso = figures["in-process"], figures["isolated"]
    rate_b, rate_i = statistics.median(base["stream_tok_s"]), statistics.median(iso["stream_tok_s"])
    per_token_us = (1 / rate_i - 1 / rate_b) * 1e6
    print()
    print("| measure | in-process | isolated | isolated / in-process |")
    print("|---|---|---|---|")
    best_b, best_i = max(base["stream_tok_s"]), max(iso["stream_tok_s"])
    print(f"| streamed generation, tok/s (median) | {rate_b:.1f} | {rate_i:.1f} "
          f"| {rate_i / rate_b:.3f}x |")  # fmt: skip
    # the best round is the one least disturbed by other load on a shared machine
    print(f"| streamed generation, tok/s (best round) | {best_b:.1f} | {best_i:.1f} "
          f"| {best_i / best_b:.3f}x |")  # fmt: skip
    for key, label in (
        ("one_token_ms", "1-token chat, ms (p50)"),
        ("embed_short_ms", "embed 1 short text, ms (p50)"),
        ("embed_batch_ms", "embed 64 sentences, ms (p50)"),
    ):
        b, i = ms(base[key]), ms(iso[key])
        print(f"| {label} | {b:.2f} | {i:.2f} | {i / b:.2f}x ({i - b:+.2f} ms) |")
    b, i = ms(base["list_models_ms"]), ms(iso["list_models_ms"])
    print(f"| list_models (no engine work), ms (p50) | {b:.3f} | {i:.3f} "
          f"| {i - b:+.3f} ms: the channel's round trip |")  # fmt: skip
    print()
    print(f"per streamed token: {per_token_us:+.0f} us isolated vs in-process "
          f"({1e6 / rate_b:.0f} us per token in-process)")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
