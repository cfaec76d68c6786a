"""Versioned bus subjects. All roost traffic lives under ``roost.v1.``."""

from __future__ import annotations

PREFIX = "roost.v1"


def service(name: str, shard: str | None = None) -> str:
    """Subject (and queue group) of a platform service, e.g. ``roost.v1.svc.infer``.

    ``shard`` narrows it to a subset of workers (for example one engine), e.g.
    ``roost.v1.svc.infer.ollama``.
    """
    return f"{PREFIX}.svc.{name}" if shard is None else f"{PREFIX}.svc.{name}.{shard}"


def invoke() -> str:
    """Subject on which agent runtime workers take invocations."""
    return f"{PREFIX}.run.invoke"


def run_answer(invocation_id: str) -> str:
    """Subject on which a non-durable run waiting in ``ctx.ask`` takes its answer."""
    return f"{PREFIX}.run.answer.{invocation_id}"


def events(session: str) -> str:
    """Subject of a session's real-time events."""
    return f"{PREFIX}.events.{session}"


def all_events() -> str:
    """Wildcard matching every session's events."""
    return f"{PREFIX}.events.*"


def session_op(op: str) -> str:
    """Subject of a session operation (``fork``, ``promote``)."""
    return f"{PREFIX}.session.{op}"
