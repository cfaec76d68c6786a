"""Turning a bearer credential into a :class:`Principal`.

A credential is a personal access token (looked up by its SHA-256), a JWT of the
configured identity provider (:class:`~roost.auth.JwtVerifier`; its subject is a roost
user, made on first sight if so configured), or the configured static admin token.
Verified credentials are cached for ``cache_s`` seconds, so an authenticated
request costs no database read most of the time; the price is that a token revoked on
another replica keeps working there for at most ``cache_s`` (revoking through this
process takes effect at once).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
from collections.abc import Sequence

from roost.auth._jwt import Claims, InvalidCredential, JwtVerifier, looks_like_jwt
from roost.auth._principal import DEFAULT_SCOPES, SCOPES, Principal, check_scopes
from roost.auth._tokens import display_prefix, is_well_formed, mint_token, token_hash
from roost.protocol import InvalidRequestError, tenants
from roost.stores import AccessToken, LruCache, SqlPrincipalStore, User

#: The tenant of the static admin token and of the first admin ``roost server init`` makes.
DEFAULT_TENANT = tenants.DEFAULT_TENANT
#: How long a verified token is trusted without a database read.
DEFAULT_CACHE_S = 5.0

log = logging.getLogger(__name__)

ADMIN = Principal(id="admin", tenant=DEFAULT_TENANT, role="admin", scopes=frozenset(SCOPES))


class Authenticator:
    """Verifies bearer credentials against the principal store."""

    def __init__(
        self,
        store: SqlPrincipalStore,
        *,
        static_token: str | None = None,
        cache_s: float = DEFAULT_CACHE_S,
        cache_size: int = 10_000,
        jwt: JwtVerifier | None = None,
        create_users: bool = False,
    ) -> None:
        if static_token is not None and len(static_token) < 16:
            raise ValueError("the admin token must be at least 16 characters")
        self.store = store
        self._static = static_token.encode() if static_token else None
        self.cache_s = cache_s
        self.jwt = jwt
        self.create_users = create_users
        self._cache: LruCache[str, tuple[Principal, float]] = LruCache(cache_size)

    async def authenticate(self, credential: str) -> Principal | None:
        """The principal ``credential`` stands for, or ``None``; raises
        :class:`InvalidCredential` when there is more to say why not (a JWT's expiry)."""
        if self._static is not None and hmac.compare_digest(credential.encode(), self._static):
            return ADMIN
        pat = is_well_formed(credential)
        if not pat and not (self.jwt is not None and looks_like_jwt(credential)):
            return None
        digest = token_hash(credential)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        if not pat:
            return await self._from_jwt(credential, digest, now)
        found = await self.store.token_owner(digest)
        if found is None:
            return None
        token, user = found
        principal = principal_of(user, token)
        # trusted until the cache bound or the token's own expiry, whichever comes first
        until = now + min(self.cache_s, max(0.0, token.expires_at - time.time()))
        self._cache.put(digest, (principal, until))
        return principal

    async def _from_jwt(self, credential: str, digest: str, now: float) -> Principal:
        assert self.jwt is not None
        claims = await self.jwt.verify(credential)
        user = await self.store.user_by_subject(claims.subject)
        if user is None:
            if not self.create_users:
                raise InvalidCredential(
                    f"no roost user has subject {claims.subject!r}: an admin adds one "
                    "(POST /api/v1/users with this subject), or the server makes users on "
                    "first sight ([server] jwt_create_users)"
                )
            user = await self._first_sight(claims)
        if user.disabled:
            raise InvalidCredential(f"user {user.name!r} is disabled")
        principal = Principal(
            id=user.id,
            tenant=user.tenant,
            role=user.role,
            scopes=frozenset(claims.scopes or DEFAULT_SCOPES),
        )
        until = now + min(self.cache_s, max(0.0, claims.expires_at - time.time()))
        self._cache.put(digest, (principal, until))
        return principal

    async def _first_sight(self, claims: Claims) -> User:
        """A member user for a JWT subject seen for the first time."""
        tenant = claims.tenant or DEFAULT_TENANT
        if not tenants.is_tenant(tenant):
            raise InvalidCredential(f"the JWT's tenant {tenant!r} is not a tenant id")
        base = re.sub(r"[^A-Za-z0-9._@-]", "-", claims.name).strip("-._@")[:100] or "user"
        suffix = hashlib.sha256(claims.subject.encode()).hexdigest()[:8]
        for name in (base, f"{base}-{suffix}"):
            try:
                user = await self.store.create_user(
                    name, email=claims.email, tenant=tenant, subject=claims.subject
                )
            except InvalidRequestError:  # the name is taken, or another replica just made it
                made = await self.store.user_by_subject(claims.subject)
                if made is not None:
                    return made
                continue
            log.info("made user %s (%s) for JWT subject %s", user.name, user.id, claims.subject)
            await self.store.record(
                "user.create", tenant=tenant, actor=user.id, target=user.id, via="jwt",
                subject=claims.subject,
            )  # fmt: skip
            return user
        raise InvalidCredential(f"could not make a user for subject {claims.subject!r}")

    async def issue(
        self,
        user_id: str,
        name: str,
        *,
        scopes: Sequence[str] = DEFAULT_SCOPES,
        ttl_s: float,
    ) -> tuple[str, AccessToken]:
        """A new token of ``user_id``: the token itself (shown once) and its record."""
        chosen = check_scopes(scopes)
        token = mint_token()
        record = await self.store.create_token(
            user_id, name, chosen, ttl_s, digest=token_hash(token), prefix=display_prefix(token)
        )
        return token, record

    async def revoke(self, token_id: str, *, owner: str | None) -> AccessToken:
        """Revoke a token (``owner``: only if it is that user's); effective at once here."""
        record = await self.store.revoke_token(token_id, owner=owner)
        self.forget()
        return record

    def forget(self) -> None:
        """Drop every cached verification (after a revocation or a user disabled here)."""
        self._cache.clear()


def principal_of(user: User, token: AccessToken) -> Principal:
    """The principal a live token of ``user`` stands for."""
    return Principal(
        id=user.id,
        tenant=user.tenant,
        role=user.role,
        scopes=frozenset(token.scopes),
        token_id=token.id,
    )


__all__ = ["ADMIN", "DEFAULT_CACHE_S", "DEFAULT_TENANT", "Authenticator", "principal_of"]
