"""A bound on request bodies, enforced before a route reads them.

A body whose ``Content-Length`` is over the limit is refused at once; a body sent without a
length (chunked) is counted as it arrives and refused as soon as it goes over. Either way
the client gets a 413 in the surface's error shape and the server never buffers more than
the limit.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from roost.protocol import ErrorCode
from roost.server._errors import OPENAI_PREFIX
from roost.wire import error_body

_DRAIN_BYTES = 64 * 1024 * 1024


class BodyLimit:
    """ASGI middleware refusing request bodies over ``max_bytes`` with 413."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, send)
            return
        seen = 0
        refused = False

        async def counted() -> Message:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # answer now; the app sees the client go away and stops reading
                    refused = True
                    await self._refuse(scope, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            if not refused:  # once refused, the 413 is the response
                await send(message)

        try:
            await self.app(scope, counted, guarded)
        except Exception:
            # a route that reads the body itself sees the refusal as the client gone
            # (starlette's ClientDisconnect); the 413 is sent, so that is no failure
            if not refused:
                raise
        if refused:
            await self._drain(receive)

    async def _drain(self, receive: Receive) -> None:
        """Read (and drop) the rest of a refused body, up to a bound, so the client finishes
        sending and reads the 413 instead of a reset connection."""
        drained = 0
        while drained < _DRAIN_BYTES:
            message = await receive()
            if message["type"] != "http.request":
                return
            drained += len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    async def _refuse(self, scope: Scope, send: Send) -> None:
        message = f"request body too large: at most {self.max_bytes} bytes"
        body: dict[str, Any]
        if str(scope.get("path", "")).startswith(OPENAI_PREFIX):
            body = error_body(413, message, ErrorCode.PAYLOAD_TOO_LARGE)
        else:
            body = {
                "error": {"code": ErrorCode.PAYLOAD_TOO_LARGE, "message": message, "details": {}}
            }
        data = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(data)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": data})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


__all__ = ["BodyLimit"]
