"""Following a started run: its live events as they arrive, then its completion.

Every streaming surface (the native SSE stream, the OpenAI streams, A2A) follows a run the
same way, so it is written once. Each adds what it needs on top: the native stream and A2A
replay the session DAG first and merge it with the live events by message id; the OpenAI
streams keep only the tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from roost.platform import PlatformAPI
from roost.protocol import CompleteMessage, EventMessage

Followed = EventMessage | CompleteMessage | None
"""A live event; the run's completion (always the last item); ``None`` when idle."""


class LiveRun:
    """The live events of run ``run_id`` from now on, then its :class:`CompleteMessage`.

    The subscription starts when this is made, so a caller can read the record of what came
    before and then iterate without a gap wider than the subscription's start. Use it as an
    ``async with`` block: leaving it (the client went away, say) stops the waiting.

    With ``idle_s``, ``None`` is yielded after each quiet spell (``idle_s``, doubling up to
    ``idle_max_s``), for callers that reread the record meanwhile.
    """

    def __init__(
        self,
        platform: PlatformAPI,
        run_id: str,
        session: str,
        *,
        idle_s: float | None = None,
        idle_max_s: float | None = None,
    ) -> None:
        self._queue: asyncio.Queue[EventMessage] = asyncio.Queue()
        self._waiter = asyncio.ensure_future(
            platform.harness.wait(run_id, session=session, on_event=self._queue.put_nowait)
        )
        self._idle_s = idle_s
        self._idle_max_s = idle_max_s if idle_max_s is not None else idle_s

    async def __aenter__(self) -> LiveRun:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop waiting for the run (the run itself goes on)."""
        if not self._waiter.done():
            self._waiter.cancel()
        with contextlib.suppress(BaseException):
            await self._waiter

    def __aiter__(self) -> AsyncIterator[Followed]:
        return self._items()

    async def _items(self) -> AsyncIterator[Followed]:
        wait_s = self._idle_s
        getter: asyncio.Future[EventMessage] | None = None
        try:
            while True:
                getter = asyncio.ensure_future(self._queue.get())
                await asyncio.wait(
                    {self._waiter, getter}, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED
                )
                if getter.done():
                    yield getter.result()
                    continue
                getter.cancel()
                if self._waiter.done():
                    break
                if wait_s is not None and self._idle_max_s is not None:
                    wait_s = min(wait_s * 2, self._idle_max_s)
                yield None
            while not self._queue.empty():
                yield self._queue.get_nowait()
            yield self._waiter.result()
        finally:
            # a pending get left behind would outlive the stream ("Task was destroyed")
            if getter is not None and not getter.done():
                getter.cancel()


__all__ = ["Followed", "LiveRun"]
