#!/usr/bin/env bash
# Re-lock roost's dependencies: lock/dev.txt (roost with every extra: what scripts/test.sh
# installs) and lock/run.txt (roost[local]: what scripts/run-example.sh installs), both with
# hashes and pinned to the same versions (run.txt is resolved within dev.txt).
#
# Usage: scripts/lock.sh             add what pyproject.toml gained, keep every other pin
#        scripts/lock.sh --upgrade   move every pin to its newest release, then run the tests
#
# pip-tools runs in a throwaway venv, so the project's .venv is not touched by locking.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
upgrade=()
if [ "${1:-}" = "--upgrade" ]; then
    upgrade=(--upgrade)
elif [ -n "${1:-}" ]; then
    echo "usage: scripts/lock.sh [--upgrade]" >&2
    exit 2
fi

tools="$(mktemp -d)"
trap 'rm -rf "$tools"' EXIT
echo "==> installing pip-tools into a throwaway venv" >&2
python3 -m venv "$tools/venv"
"$tools/venv/bin/python" -m pip install --disable-pip-version-check -q "pip==26.3" "pip-tools==7.6.2"

compile() {  # compile OUT EXTRAS [pip-compile options...]
    local out="$1" extras="$2"
    shift 2
    echo "==> resolving roost[$extras] into $out" >&2
    (cd "$tools" && "$tools/venv/bin/pip-compile" --quiet --generate-hashes --allow-unsafe \
        --strip-extras --no-emit-index-url --no-emit-find-links --no-header \
        --extra "$extras" --output-file "$root/$out" "${upgrade[@]}" "$@" "$root/pyproject.toml")
    # roost itself is installed from the work tree (editable), never from the lock: drop the
    # self-reference that the `dev` extra's roost[devcluster] puts there.
    python3 - "$root/$out" <<'PY'
import re, sys
path = sys.argv[1]
text = open(path).read()
text = re.sub(r"(?m)^roost @ \S+\n(?:    #.*\n)*", "", text)
text = text.replace(f"{sys.argv[1].rsplit('/lock/', 1)[0]}/", "")
header = ("# Locked by scripts/lock.sh from pyproject.toml -- do not edit by hand.\n"
          "# Install with scripts/setup.sh; upgrade with scripts/lock.sh --upgrade.\n")
open(path, "w").write(header + text)
PY
}

compile lock/dev.txt local,dev,devcluster,postgres
compile lock/run.txt local --constraint "$root/lock/dev.txt"
echo "==> locked: lock/dev.txt ($(grep -c '^[a-z0-9]' lock/dev.txt) packages), lock/run.txt ($(grep -c '^[a-z0-9]' lock/run.txt) packages)" >&2

if [ ${#upgrade[@]} -gt 0 ]; then
    echo "==> testing the upgraded lock" >&2
    exec scripts/test.sh
fi
