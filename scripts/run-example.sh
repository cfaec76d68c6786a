#!/usr/bin/env bash
# Install roost with the embedded engines and run the example chat agent on them.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh run
echo "==> roost doctor: is this installation able to run an agent?" >&2
.venv/bin/roost doctor
echo "==> deploying examples/hello-chat" >&2
.venv/bin/roost agent deploy examples/hello-chat
echo "==> running it on the embedded model" >&2
.venv/bin/roost agent run hello-chat -p "${1:-Say hello to a new Roost user in one sentence.}"
echo "==> the recorded session (roost session list / roost session get NAME)" >&2
.venv/bin/roost session list --limit 1
