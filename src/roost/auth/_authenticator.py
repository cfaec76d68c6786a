"""Turning a bearer credential into a :class:`Principal`.

A credential is a personal access token (looked up by its SHA-256), or the configured
static admin token. Verified tokens are cached for ``cache_s`` seconds, so an authenticated
request costs no database read most of the time; the price is that a token revoked on
another replica keeps working there for at most ``cache_s`` (revoking through this
process takes effect at once).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Sequence

from roost.auth._principal import DEFAULT_SCOPES, SCOPES, Principal, check_scopes
from roost.auth._tokens import display_prefix, is_well_formed, mint_token, token_hash
from roost.protocol import tenants
from roost.stores import AccessToken, LruCache, SqlPrincipalStore, User

#: The tenant of the static admin token and of the first admin ``roost server init`` makes.
DEFAULT_TENANT = tenants.DEFAULT_TENANT
#: How long a verified token is trusted without a database read.
DEFAULT_CACHE_S = 5.0

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
    ) -> None:
        if static_token is not None and len(static_token) < 16:
            raise ValueError("the admin token must be at least 16 characters")
        self.store = store
        self._static = static_token.encode() if static_token else None
        self.cache_s = cache_s
        self._cache: LruCache[str, tuple[Principal, float]] = LruCache(cache_size)

    async def authenticate(self, credential: str) -> Principal | None:
        """The principal ``credential`` stands for, or ``None``."""
        if self._static is not None and hmac.compare_digest(credential.encode(), self._static):
            return ADMIN
        if not is_well_formed(credential):
            return None
        digest = token_hash(credential)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        found = await self.store.token_owner(digest)
        if found is None:
            return None
        token, user = found
        principal = principal_of(user, token)
        # trusted until the cache bound or the token's own expiry, whichever comes first
        until = now + min(self.cache_s, max(0.0, token.expires_at - time.time()))
        self._cache.put(digest, (principal, until))
        return principal

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
