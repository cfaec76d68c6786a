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


def _user_token(user: str) -> str:
    # a user id is one subject token: never a wildcard, a separator or whitespace, so a
    # request cannot reach another user's daemon by the shape of a name
    if not user or any(c in user for c in ".*> \t\r\n"):
        raise ValueError(f"not a user id usable in a subject: {user!r}")
    return user


def tools_request(user: str) -> str:
    """Fire-and-forget requests for ``user``'s tools daemon (tool calls, cancellations,
    config reloads): taken by one gateway of the ``gateways`` queue group."""
    return f"{PREFIX}.tools.request.{_user_token(user)}"


def tools_sync(user: str) -> str:
    """Request-reply tool calls for ``user``'s daemon: every gateway receives them; only the
    one holding the daemon answers."""
    return f"{PREFIX}.tools.request.sync.{_user_token(user)}"


def daemon_command(user: str) -> str:
    """Request-reply daemon operations (status, processes, files, terminals) for ``user``'s
    daemon: every gateway receives them; only the one holding the daemon answers."""
    return f"{PREFIX}.daemon.command.{_user_token(user)}"


def daemon_presence(user: str) -> str:
    """A gateway's notice that it accepted a daemon of ``user`` (so another gateway holding
    an older one of the same user lets it go: one daemon per user across gateways)."""
    return f"{PREFIX}.daemon.presence.{_user_token(user)}"


def terminal(user: str, terminal_id: str) -> str:
    """A terminal's output for ``user``, published by the gateway holding the daemon."""
    return f"{PREFIX}.daemon.terminal.{_user_token(user)}.{_user_token(terminal_id)}"


def terminal_input(user: str, terminal_id: str) -> str:
    """Keystrokes (and resizes) for a terminal of ``user``'s daemon."""
    return f"{PREFIX}.daemon.terminal_in.{_user_token(user)}.{_user_token(terminal_id)}"


#: The wildcard subscriptions of a gateway (the first with the queue group).
GATEWAY_QUEUE = "gateways"
ALL_TOOLS_REQUESTS = f"{PREFIX}.tools.request.*"
ALL_TOOLS_SYNC = f"{PREFIX}.tools.request.sync.*"
ALL_DAEMON_COMMANDS = f"{PREFIX}.daemon.command.*"
ALL_TERMINAL_INPUT = f"{PREFIX}.daemon.terminal_in.*.*"
ALL_DAEMON_PRESENCE = f"{PREFIX}.daemon.presence.*"


def user_of(subject: str) -> str:
    """The user token of a per-user subject (its last token but, for terminals, one)."""
    parts = subject.split(".")
    return parts[-2] if ".daemon.terminal" in subject else parts[-1]
