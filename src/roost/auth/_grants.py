"""Run grants: the identity a run's requests carry on the bus, stamped by the runtime and
checked by the services (:class:`GrantSigner`, :class:`GrantVerifier`).

Services scope everything by the request's ``agent``, ``session`` and ``branch`` (KV refs,
vector namespaces, a tenant's models, the caller of ``call_agent``). Without a grant, any
bus client could write those fields by hand and read another agent's or tenant's data.
With grants configured, the runtime that executes a run, which alone knows whose run it
is, signs ``(agent, session, branch, owner, expiry)`` with the deployment's Ed25519 grant key; a
service holding only the public key verifies it and refuses a request whose grant is
missing, forged, expired, or names another agent, session, branch or owner (the user
whose tools daemon the run's daemon tools reach).

A grant covers one run's identity, not one request: it is signed once per
``(agent, session, branch, owner)`` and reused for ``GRANT_TTL_S``, and a service verifies each
grant once and remembers it, so the steady cost is a dictionary lookup on each side. The
price: a grant copied off the bus (which takes a subscription to a service subject, which
NATS permissions keep to service workers) works for the rest of its life, for that agent,
session, branch and owner only.

Format: ``g2.<base64url(JSON [agent, session, branch, owner, expires_at])>.<base64url(signature)>``.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from roost.config import ConfigError
from roost.protocol import ErrorCode, RequestMessage, RoostError
from roost.stores import LruCache

#: How long one grant is valid; a signer makes a new one when less than a tenth is left.
GRANT_TTL_S = 3600.0
_VERSION = "g2"
_Claims = tuple[str, str, str, str, float]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class GrantError(RoostError):
    """A request's grant is missing or does not cover it."""

    code = ErrorCode.AUTH


class GrantSigner:
    """Stamps requests with a grant for their agent, session and branch."""

    def __init__(self, key: Ed25519PrivateKey, *, ttl_s: float = GRANT_TTL_S) -> None:
        self._key = key
        self.ttl_s = ttl_s
        self._grants: LruCache[tuple[str, str, str, str], tuple[str, float]] = LruCache(4096)

    def grant(self, agent: str, session: str, branch: str, owner: str = "") -> str:
        """A grant for ``(agent, session, branch, owner)``: a cached one, or a fresh one."""
        scope = (agent, session, branch, owner)
        now = time.time()
        cached = self._grants.get(scope)
        if cached is not None and cached[1] - now > self.ttl_s / 10:
            return cached[0]
        expires = now + self.ttl_s
        payload = _b64(msgspec.json.encode([agent, session, branch, owner, expires]))
        signed = f"{_VERSION}.{payload}"
        grant = f"{signed}.{_b64(self._key.sign(signed.encode()))}"
        self._grants.put(scope, (grant, expires))
        return grant

    def stamp(self, request: RequestMessage) -> RequestMessage:
        """``request`` with the grant of its agent, session, branch and owner."""
        grant = self.grant(request.agent, request.session, request.branch, request.owner)
        return msgspec.structs.replace(request, grant=grant)


class GrantVerifier:
    """Checks that a request's grant covers its agent, session and branch."""

    def __init__(self, key: Ed25519PublicKey) -> None:
        self._key = key
        self._verified: LruCache[str, _Claims] = LruCache(16_384)

    def check(self, request: RequestMessage) -> None:
        """Raise :class:`GrantError` (code ``auth``) unless ``request`` is covered."""
        if not request.grant:
            raise GrantError(
                f"{request.service}.{request.op}: the request carries no run grant (requests "
                "come from a run's runtime, which signs them)"
            )
        agent, session, branch, owner, expires = self._claims(request.grant)
        if expires < time.time():
            raise GrantError(f"{request.service}.{request.op}: the run grant has expired")
        claimed = (request.agent, request.session, request.branch, request.owner)
        if (agent, session, branch, owner) != claimed:
            raise GrantError(
                f"{request.service}.{request.op}: the run grant is for another agent, session, "
                "branch or owner than the request names"
            )

    def owner_of(self, grant: str) -> str:
        """The owner a valid, unexpired ``grant`` names (``""``: a run without an owner).
        Raises :class:`GrantError` (code ``auth``) for a missing, forged or expired one."""
        if not grant:
            raise GrantError("the request carries no run grant")
        _, _, _, owner, expires = self._claims(grant)
        if expires < time.time():
            raise GrantError("the run grant has expired")
        return owner

    def _claims(self, grant: str) -> _Claims:
        known = self._verified.get(grant)
        if known is not None:
            return known
        version, _, rest = grant.partition(".")
        payload, _, signature = rest.partition(".")
        try:
            if version != _VERSION:
                raise ValueError(f"version {version!r}")
            self._key.verify(_unb64(signature), f"{version}.{payload}".encode())
            agent, session, branch, owner, expires = msgspec.json.decode(_unb64(payload))
            claims: _Claims = (str(agent), str(session), str(branch), str(owner), float(expires))
        except (InvalidSignature, ValueError, TypeError, msgspec.DecodeError):
            raise GrantError("the request's run grant does not verify") from None
        self._verified.put(grant, claims)
        return claims


def _read_key(path: Path, what: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise ConfigError(f"[bus] {what}: cannot read {path}: {exc}") from None


def load_signer(path: Path | None) -> GrantSigner | None:
    """The signer of the Ed25519 private key (PEM) at ``path``; ``None`` without one."""
    if path is None:
        return None
    try:
        key = serialization.load_pem_private_key(_read_key(path, "grant_key_file"), None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"[bus] grant_key_file {path}: not a PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"[bus] grant_key_file {path}: not an Ed25519 key")
    return GrantSigner(key)


def load_verifier(path: Path | None) -> GrantVerifier | None:
    """The verifier of the Ed25519 public key (PEM) at ``path``; ``None`` without one."""
    if path is None:
        return None
    try:
        key = serialization.load_pem_public_key(_read_key(path, "grant_public_key_file"))
    except (ValueError, TypeError) as exc:
        message = f"[bus] grant_public_key_file {path}: not a PEM public key: {exc}"
        raise ConfigError(message) from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"[bus] grant_public_key_file {path}: not an Ed25519 key")
    return GrantVerifier(key)


def write_grant_keys(directory: Path) -> tuple[Path, Path]:
    """A new grant key pair in ``directory`` (kept if there): (private, public) PEM paths."""
    private, public = directory / "grant-key.pem", directory / "grant-pub.pem"
    if private.exists() and public.exists():
        return private, public
    key = Ed25519PrivateKey.generate()
    directory.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    private.touch(mode=0o600)
    private.write_bytes(pem)
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


__all__ = [
    "GRANT_TTL_S",
    "GrantError",
    "GrantSigner",
    "GrantVerifier",
    "load_signer",
    "load_verifier",
    "write_grant_keys",
]
