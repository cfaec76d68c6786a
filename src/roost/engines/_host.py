"""The engine host: one embedded engine in a process of its own.

``python -m roost.engines._host ENGINE --requests FD --replies FD --parent PID --options JSON``

llama.cpp and torch are native code: a segfault or an abort in them (a llama.cpp build for
another CPU dies in ``decode``) kills the whole process, with no Python exception to catch.
So :class:`~roost.engines.IsolatedEngine` runs the engine here, the way Ollama runs its model
runners, and a crash costs the calls in flight, never the CLI, the worker or the test run.

The host runs the ordinary in-process engine class (:class:`~roost.engines.LlamaCppEngine`,
:class:`~roost.engines.SentenceTransformerEngine`) unchanged in its own asyncio loop and serves
many concurrent calls multiplexed by call id (frames in :mod:`roost.engines._frames`):

* frames travel on two dedicated pipes, never stdout: fd 1 is pointed at stderr first, so a
  native library that prints cannot corrupt the channel; stderr goes to the parent's log;
* a ``Cancel`` frame cancels the call's task (the llama engine then stops generating);
* the host exits when the parent dies (``PR_SET_PDEATHSIG``, the guard of
  :func:`roost._proc.set_parent_death_signal`) and when its request pipe closes (the
  parent closed the engine or is gone, on any OS); it ignores SIGINT, which a terminal's
  Ctrl-C sends to the whole process group: its parent decides when it stops;
* ``faulthandler`` is on, so a native crash leaves the Python stacks in the parent's log.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import json
import logging
import os
import signal
import sys
import threading
from typing import Any

from roost.engines._frames import (
    Call,
    Cancel,
    Done,
    Failed,
    Loaded,
    Loading,
    Ready,
    Token,
    ToParent,
    encode,
    read_frame,
    to_host_decoder,
    write_all,
)
from roost.protocol import EMBEDDED_ENGINES, InvalidRequestError, RoostError

log = logging.getLogger("roost.engines.host")

HOSTED_ENGINES = EMBEDDED_ENGINES  # the engines a host child process runs

_CLOSE_TIMEOUT_S = 10.0


def make_engine(name: str, options: dict[str, Any]) -> Any:
    """The in-process engine ``name`` built with ``options`` (its constructor's keywords)."""
    if name == "llama-cpp":
        from roost.engines._llama import LlamaCppEngine

        return LlamaCppEngine(**options)
    if name == "sentence-transformers":
        from roost.engines._st import SentenceTransformerEngine

        return SentenceTransformerEngine(**options)
    raise ValueError(f"unknown engine {name!r} (hosted engines: {', '.join(HOSTED_ENGINES)})")


class Host:
    """Serves the calls arriving on ``requests`` with ``engine``, answering on ``replies``."""

    def __init__(self, engine: Any, requests: int, replies: int) -> None:
        self.engine = engine
        self.requests = requests
        self.replies = replies
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.loaded: set[str] = set()  # targets loaded so far (a load after them is cheap)
        self._broken = False
        self._done = asyncio.Event()

    async def serve(self) -> int:
        loop = asyncio.get_running_loop()
        reader = threading.Thread(target=self._read, args=(loop,), name="roost-host-read")
        reader.daemon = True
        reader.start()
        self._send(Ready(pid=os.getpid(), engine=self.engine.name))
        await self._done.wait()
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.engine.close(), _CLOSE_TIMEOUT_S)
        return 0

    def _read(self, loop: asyncio.AbstractEventLoop) -> None:
        """The request pipe's reader thread: frames to the loop, end of stream to a stop."""
        try:
            with os.fdopen(self.requests, "rb") as stream:
                while (body := read_frame(stream)) is not None:
                    frame = to_host_decoder.decode(body)
                    loop.call_soon_threadsafe(self._dispatch, frame)
        except Exception as exc:  # a corrupted channel: nothing sensible is left to do
            log.error("engine host: bad request frame: %s", exc)
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._done.set)

    def _dispatch(self, frame: Call | Cancel) -> None:
        if isinstance(frame, Cancel):
            task = self.tasks.get(frame.id)
            if task is not None:
                task.cancel()
            return
        self.tasks[frame.id] = asyncio.get_running_loop().create_task(self._run(frame))

    def _send(self, frame: ToParent) -> None:
        if self._broken:
            return
        try:
            write_all(self.replies, encode(frame))
        except OSError:  # the parent is gone: stop (PDEATHSIG usually got here first)
            self._broken = True
            self._done.set()

    async def _run(self, call: Call) -> None:
        try:
            done = await self._op(call)
        except asyncio.CancelledError:
            return  # cancelled by the parent (nobody waits) or by the stop
        except RoostError as exc:
            self._send(Failed(id=call.id, error=exc.to_info()))
        except Exception as exc:
            error = RoostError(
                f"the {self.engine.name} engine failed: {type(exc).__name__}: {exc}",
                engine=self.engine.name,
            )
            self._send(Failed(id=call.id, error=error.to_info()))
        else:
            self._send(done)
        finally:
            self.tasks.pop(call.id, None)

    async def _op(self, call: Call) -> Done:
        engine = self.engine
        if call.op == "list_models":
            return Done(id=call.id, models=await engine.list_models())
        model = call.model
        if model is None:
            raise InvalidRequestError(f"engine host: call {call.op!r} without a model")
        if call.op == "chat" and call.request is not None and not call.request.messages:
            return Done(id=call.id, chat=await engine.chat(model, call.request))  # its error
        dimension: int | None = None
        if model.target not in self.loaded or call.op == "load":
            self._send(Loading(id=call.id))
            value = await engine.load(model)
            dimension = value if isinstance(value, int) else None
            self.loaded.add(model.target)
            self._send(Loaded(id=call.id))
        if call.op == "load":
            return Done(id=call.id, dimension=dimension)
        if call.op == "embed":
            return Done(id=call.id, embed=await engine.embed(model, call.inputs))
        if call.request is None:
            raise InvalidRequestError("engine host: a chat call without a request")

        async def on_token(text: str) -> None:
            self._send(Token(id=call.id, text=text))

        result = await engine.chat(model, call.request, on_token=on_token if call.stream else None)
        return Done(id=call.id, chat=result)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m roost.engines._host")
    parser.add_argument("engine", choices=HOSTED_ENGINES)
    parser.add_argument("--requests", type=int, required=True, help="fd to read calls from")
    parser.add_argument("--replies", type=int, required=True, help="fd to write answers to")
    parser.add_argument("--parent", type=int, default=0, help="exit when this pid is gone")
    parser.add_argument("--options", default="{}", help="engine constructor keywords (JSON)")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    # fd 1 is the stderr pipe from now on: whatever native code prints stays out of the frames
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    faulthandler.enable(file=sys.stderr)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    args = _parse(argv)
    if args.parent:
        from roost._proc import set_parent_death_signal

        set_parent_death_signal(signal.SIGTERM)
        if os.getppid() != args.parent:  # the parent died before the guard was armed
            return 1
    for fd in (args.requests, args.replies):  # never leak the channel into grandchildren
        os.set_inheritable(fd, False)
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    engine = make_engine(args.engine, json.loads(args.options))
    return asyncio.run(Host(engine, args.requests, args.replies).serve())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
