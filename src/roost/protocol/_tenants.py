"""Tenants' names: every agent, session, model and secret of a tenant lives in its own
namespace, so one tenant's name can never reach another's thing.

Inside roost (the stores, bus subjects, KV refs, Temporal ids) a tenant's name is
*qualified*: ``acme+echo`` is tenant ``acme``'s agent ``echo``. The default tenant's names
are unqualified (``echo``), so a one-user roost never sees a qualifier. ``+`` appears in no
agent, model, secret or session name a user gives, is no NATS wildcard or token separator,
and is safe in file names and URLs' path segments, so a qualified name works everywhere a
plain one does.

Users only ever see their own tenant's names unqualified; :func:`local_name` is the one
check of whether a qualified name belongs to a tenant.
"""

from __future__ import annotations

import re

#: The tenant of a deployment that has only one (and of every name without a qualifier).
DEFAULT_TENANT = "default"
#: What a tenant's id looks like: lowercase letters and digits, a letter first.
TENANT_PATTERN = r"^[a-z][a-z0-9]{0,31}$"
SEPARATOR = "+"

_TENANT = re.compile(TENANT_PATTERN)


def is_tenant(tenant: str) -> bool:
    """Whether ``tenant`` is a well-formed tenant id."""
    return bool(_TENANT.match(tenant))


def qualify(tenant: str, name: str) -> str:
    """``name`` of ``tenant`` as roost stores it (the default tenant's: unchanged)."""
    if not is_tenant(tenant):
        raise ValueError(f"not a tenant id: {tenant!r}")
    return name if tenant == DEFAULT_TENANT else f"{tenant}{SEPARATOR}{name}"


def tenant_of(qualified: str) -> str:
    """The tenant a stored name belongs to."""
    tenant, separator, _ = qualified.partition(SEPARATOR)
    return tenant if separator and is_tenant(tenant) else DEFAULT_TENANT


def local_name(tenant: str, qualified: str) -> str | None:
    """The name ``tenant`` knows the stored name ``qualified`` by; ``None`` when it belongs
    to another tenant."""
    if tenant == DEFAULT_TENANT:
        return None if SEPARATOR in qualified else qualified
    prefix = tenant + SEPARATOR
    if not qualified.startswith(prefix):
        return None
    name = qualified[len(prefix) :]
    return name if name and SEPARATOR not in name else None


def visible_names(tenant: str, name: str) -> list[str]:
    """The stored names a run of ``tenant`` may mean by ``name``, first match wins: its own
    (``acme+gpt``), then the deployment's shared one (``gpt``, the default tenant's, which an
    operator registers for everyone). A name that carries a qualifier itself means nothing."""
    if SEPARATOR in name:
        return []
    own = qualify(tenant, name)
    return [own] if own == name else [own, name]


__all__ = [
    "DEFAULT_TENANT",
    "SEPARATOR",
    "TENANT_PATTERN",
    "is_tenant",
    "local_name",
    "qualify",
    "tenant_of",
    "visible_names",
]
