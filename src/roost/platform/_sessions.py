"""Session operations above the state store: forking a branch with the KV it had there."""

from __future__ import annotations

from typing import Any

from roost.protocol import InvalidRequestError, NotFoundError
from roost.stores import Branch, Node, Session, Stores, session_ref


async def fork_session(
    stores: Stores, session: Session, from_node: str, branch: str | None = None
) -> Branch:
    """Branch ``session`` at ``from_node`` (id or unique prefix); the new branch's KV
    (session scope) is what each agent's KV was at that node."""
    node = await resolve_node(stores, session, from_node)
    new_branch = await stores.state.fork(session.id, node.id, branch)
    commits = kv_commits_at(await stores.state.ancestors(node.id))
    for agent, commit in commits.items():
        await stores.require_kv().set_ref(session_ref(agent, session.id, new_branch.name), commit)
    return new_branch


async def resolve_node(stores: Stores, session: Session, ref: str) -> Node:
    """The node of ``session`` that ``ref`` (a node id or a unique prefix of one) names."""
    if len(ref) >= 64:
        return await stores.state.get_node(ref)
    matches = [n for n in await stores.state.all_nodes(session.id) if n.id.startswith(ref)]
    if not matches:
        raise NotFoundError(f"no node {ref!r} in session {session.name}")
    if len(matches) > 1:
        raise InvalidRequestError(f"node prefix {ref!r} is ambiguous in session {session.name}")
    return matches[0]


def kv_commits_at(path: list[Node]) -> dict[str, str]:
    """Each agent's session-scope KV commit at the end of ``path`` (oldest node first):
    the commit returned by its last successful put or delete."""
    requests: dict[str, dict[str, Any]] = {}
    commits: dict[str, str] = {}
    for node in path:
        content = node.content
        if node.kind == "request" and content.get("service") == "kv":
            requests[content.get("id", "")] = content
        elif node.kind == "response" and content.get("ok", True):
            request = requests.get(content.get("correlation_id", ""))
            if request is None or request.get("op") not in ("put", "delete"):
                continue
            if (request.get("body") or {}).get("scope", "session") != "session":
                continue
            commit = (content.get("body") or {}).get("commit")
            if commit:
                commits[request.get("agent", "")] = commit
    return commits


__all__ = ["fork_session", "kv_commits_at", "resolve_node"]
