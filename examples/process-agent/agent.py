"""A roost process agent: a small HTTP server that uses ordinary clients.

roost starts ``python agent.py`` in this folder with ``PORT`` set, waits for ``GET /health``
to answer 200, then sends each run as ``POST /invoke`` (see README.md). Every call this
agent makes to the platform goes through the provider endpoint named in the /invoke body,
with that invocation's own api key, so it is recorded in the run's session.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from openai import OpenAI

SYSTEM_PROMPT = os.environ.get("PROCESS_AGENT_SYSTEM_PROMPT", "You are a concise assistant.")
COUNTER_KEY = "invocations"

# The provider is on 127.0.0.1: never route calls to it through an HTTP proxy.
_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def prompt_of(value: Any) -> str:
    """The user's text: a plain string input, or ``{"prompt": ...}``."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("prompt"), str):
        return str(value["prompt"])
    return json.dumps(value)


def count_invocation(provider: dict[str, Any]) -> int:
    """Add one to this session's invocation counter in roost's KV store; return the count."""
    url = f"{provider['url']}/kv/{COUNTER_KEY}"
    auth = {"Authorization": f"Bearer {provider['api_key']}"}
    try:
        with _http.open(urllib.request.Request(url, headers=auth), timeout=30) as response:
            count = int(response.read().decode() or 0)
    except urllib.error.HTTPError as exc:
        if exc.code != 404:  # 404: nothing counted yet in this session
            raise
        count = 0
    count += 1
    put = urllib.request.Request(url, data=str(count).encode(), headers=auth, method="PUT")
    with _http.open(put, timeout=30):
        pass
    return count


def invoke(body: dict[str, Any]) -> dict[str, Any]:
    """One run: count it, then answer the prompt with one chat completion."""
    provider = body["provider"]
    client = OpenAI(
        base_url=provider["base_url"],
        api_key=provider["api_key"],
        timeout=max(float(body.get("timeout_s", 60)), 1.0),
    )
    count = count_invocation(provider)
    completion = client.chat.completions.create(
        model="default",  # "default": the agent's model from agent.toml, or the platform's
        messages=[
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": prompt_of(body.get("input"))},
        ],
        max_tokens=256,
    )
    return {"answer": completion.choices[0].message.content or "", "count": count}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: roost reuses its connection to the agent
    disable_nagle_algorithm = True  # small responses go out at once, not after a delayed ACK

    def do_GET(self) -> None:
        if self.path == "/health":
            self.reply(200, {"status": "ok"})
        else:
            self.reply(404, {"error": f"no route GET {self.path}"})

    def do_POST(self) -> None:
        if self.path != "/invoke":
            self.reply(404, {"error": f"no route POST {self.path}"})
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length))
            self.reply(200, {"output": invoke(body)})
        except Exception as exc:  # report the failure to roost; it fails the run
            print(f"invoke failed: {exc!r}", file=sys.stderr, flush=True)
            self.reply(500, {"error": f"{type(exc).__name__}: {exc}"})

    def reply(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # no access log on stderr (roost logs the agent's stderr lines)


def main() -> None:
    port = int(os.environ["PORT"])
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(f"process-agent listening on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
