"""Who may do what on NATS: a user per worker role, each with the subjects its role needs
and nothing more (:func:`role_permissions`), and the ``nats-server`` configuration that
enforces them (:func:`nats_authorization`).

What the roles do on the bus (all subjects under ``roost.v1``):

- a service (``kv``, ``vec``, ``infer``, ``embed``; the ``agent`` role's ``tool`` and
  ``agent``) takes requests on ``svc.<service>`` and its shards and answers them;
  ``infer`` also publishes a run's token events;
- the ``agent`` role runs agents: it sends service requests, publishes events (live and
  to the ``ROOST_EVENTS`` stream) and takes a waiting run's answer;
- the ``harness`` watches runs' events, delivers answers, and pings services on deploy;
- ``projection`` consumes the ``ROOST_EVENTS`` stream into the session DAG;
- ``roostd`` only checks that NATS answers before it starts workers;
- ``gateway`` (``roost server gateway``) serves users' tools daemons: it takes requests on
  the per-user tools and command subjects, answers them, forwards a fire-and-forget request
  to the gateway holding the daemon, publishes its result to the requester's inbox and
  terminals' output. The ``agent`` role's tool service calls daemons on the tools subjects
  only (with its runs' grants, which gateways check); the command subject is for the
  platform's own processes (``operator``).

Replies come back on each user's own inbox prefix (``_INBOX_<user>.``, which
:class:`~roost.bus.NatsBus` uses when it connects as a user), so no user can read the
answers to anyone else's requests. ``operator`` may do anything: it is for the API server,
``roost server worker`` and an operator's tools.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from roost.config import ROLE_BY_NAME
from roost.protocol import subjects

#: The roles' users, plus ``roostd`` (its preflight) and ``operator`` (everything). Roles
#: off the bus (the coordination services) have one too: their processes open the
#: platform, which connects, and may do no more than make sure the events stream exists.
BUS_USERS = (*sorted(ROLE_BY_NAME), "roostd", "gateway", "operator")

_SVC = f"{subjects.PREFIX}.svc"
_EVENTS = f"{subjects.PREFIX}.events.>"
_ANSWERS = f"{subjects.PREFIX}.run.answer.>"
_STREAM = "ROOST_EVENTS"
# JetStream API calls of a process that makes sure the events stream exists
_ENSURE_STREAM = (
    "$JS.API.INFO",
    f"$JS.API.STREAM.INFO.{_STREAM}",
    f"$JS.API.STREAM.CREATE.{_STREAM}",
    f"$JS.API.STREAM.UPDATE.{_STREAM}",
)
_CONSUME_STREAM = (
    f"$JS.API.CONSUMER.INFO.{_STREAM}.>",
    f"$JS.API.CONSUMER.CREATE.{_STREAM}.>",
    f"$JS.API.CONSUMER.CREATE.{_STREAM}",
    f"$JS.API.CONSUMER.DURABLE.CREATE.{_STREAM}.>",
    f"$JS.API.CONSUMER.MSG.NEXT.{_STREAM}.>",
    f"$JS.ACK.{_STREAM}.>",
)


def inbox_prefix(user: str) -> str:
    """Where ``user``'s request replies arrive (a subject prefix only it may read)."""
    return f"_INBOX_{user}"


@dataclass(frozen=True)
class BusPermissions:
    """What one bus user may publish and subscribe to; ``responds``: it may answer requests
    (publish to the reply subject of a request it received, and nothing else there)."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    responds: bool = False


def _serves(*services: str) -> tuple[str, ...]:
    return tuple(s for name in services for s in (f"{_SVC}.{name}", f"{_SVC}.{name}.>"))


def role_permissions(user: str) -> BusPermissions:
    """The permissions of bus user ``user`` (a role's name, ``roostd`` or ``operator``)."""
    if user == "operator":
        return BusPermissions(publish=(">",), subscribe=(">",), responds=True)
    inbox = (f"{inbox_prefix(user)}.>",)
    if user == "roostd":
        return BusPermissions(publish=(), subscribe=inbox)
    if user == "gateway":
        return BusPermissions(
            publish=(
                subjects.ALL_TOOLS_SYNC,  # forwarding to the gateway holding the daemon
                f"{subjects.PREFIX}.daemon.terminal.>",
                # its frontend proxy: a signed-in user's requests to their own daemon
                subjects.ALL_DAEMON_COMMANDS,
                f"{subjects.PREFIX}.daemon.terminal_in.>",
                subjects.ALL_DAEMON_PRESENCE,  # one daemon per user across gateways
                # fire-and-forget results go to the requester's inbox, which only it reads
                *(f"{inbox_prefix(u)}.>" for u in BUS_USERS if u not in ("roostd", "gateway")),
            ),
            subscribe=(
                *inbox,
                subjects.ALL_TOOLS_SYNC,
                subjects.ALL_TOOLS_REQUESTS,
                subjects.ALL_DAEMON_COMMANDS,
                subjects.ALL_TERMINAL_INPUT,
                f"{subjects.PREFIX}.daemon.terminal.>",  # its frontend's terminals' output
                subjects.ALL_DAEMON_PRESENCE,
            ),
            responds=True,
        )
    role = ROLE_BY_NAME.get(user)
    if role is None:
        raise ValueError(f"no bus user {user!r} (bus users: {', '.join(BUS_USERS)})")
    publish: list[str] = [*_ENSURE_STREAM]  # every roost process may ensure the stream
    subscribe: list[str] = [*inbox, *_serves(*role.services)]
    if "infer" in role.services:
        publish.append(_EVENTS)  # token events, as they are generated
    if user == "agent":
        # its tool service reaches the daemons of its runs' owners
        publish += [f"{_SVC}.>", _EVENTS, subjects.ALL_TOOLS_SYNC, subjects.ALL_TOOLS_REQUESTS]
        subscribe.append(_ANSWERS)
    elif user == "harness":
        publish += [f"{_SVC}.*", _ANSWERS]  # a deploy pings each service it needs
        subscribe.append(_EVENTS)
    elif user == "projection":
        publish += [*_CONSUME_STREAM]
    return BusPermissions(
        publish=tuple(publish), subscribe=tuple(subscribe), responds=bool(role.services)
    )


def nats_authorization(passwords: Mapping[str, str]) -> str:
    """The ``authorization`` block of a ``nats-server`` configuration: one user per entry
    of ``passwords`` (user -> password), with :func:`role_permissions`. No anonymous
    access: a client without a user is refused."""
    users = []
    for user, password in sorted(passwords.items()):
        allowed = role_permissions(user)
        permissions: dict[str, object] = {
            # an empty allow list would not mean "nothing": deny everything instead
            "publish": {"allow": list(allowed.publish)} if allowed.publish else {"deny": [">"]},
            "subscribe": {"allow": list(allowed.subscribe)},
        }
        if allowed.responds:
            permissions["allow_responses"] = True
        users.append({"user": user, "password": password, "permissions": permissions})
    # the configuration format accepts JSON values
    return f"authorization {{\n  users = {json.dumps(users, indent=2)}\n}}\n"


__all__ = [
    "BUS_USERS",
    "BusPermissions",
    "inbox_prefix",
    "nats_authorization",
    "role_permissions",
]
