"""Bearer JWTs from an identity provider: :class:`JwtVerifier`.

A JWT is accepted when its signature verifies against the configured public key (a PEM,
inline or from a file) or a key of the provider's JWKS picked by the token's ``kid``, and
its ``iss``, ``aud`` and ``exp`` (and ``nbf``/``iat`` if present) check out, with
``leeway_s`` of clock skew. Only asymmetric algorithms are accepted: with a public key, an
``HS256`` token would be the classic key-confusion forgery, and ``none`` is never allowed.

The JWKS is fetched with PyJWT's client (synchronous urllib) in a worker thread, cached for
``JWKS_LIFESPAN_S``, and refetched when a token names a ``kid`` it does not have, so a
provider's key rotation needs no restart. Such refetches are at most one per
``refresh_cooldown_s``, so tokens with made-up ``kid`` values cannot make the server hammer
the provider.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from roost.auth._principal import SCOPES
from roost.config import ConfigError, ServerConfig

#: How long fetched JWKS keys are trusted before the set is read again.
JWKS_LIFESPAN_S = 300.0
#: How long one JWKS fetch may take.
JWKS_TIMEOUT_S = 10.0

_ASYMMETRIC = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


class InvalidCredential(Exception):
    """A bearer credential that is refused; the message says why (``expired``, ...)."""


@dataclass(frozen=True)
class Claims:
    """What roost reads from a verified JWT."""

    subject: str  # ``iss|sub``: unique across providers
    name: str
    email: str
    expires_at: float
    scopes: tuple[str, ...]  # the roost scopes among its ``scope``/``scp`` (may be none)
    tenant: str | None  # the tenant claim's value, when one is configured
    raw: dict[str, Any]


class JwtVerifier:
    """Verifies bearer JWTs of one issuer and audience."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        public_key: str = "",
        jwks_url: str = "",
        algorithms: Sequence[str] = ("RS256", "ES256", "EdDSA"),
        leeway_s: float = 60.0,
        tenant_claim: str = "",
        refresh_cooldown_s: float = 30.0,
    ) -> None:
        if bool(public_key) == bool(jwks_url):
            raise ConfigError("JWT auth needs one of [server] jwt_public_key(_file) or jwks_url")
        if not issuer or not audience:
            raise ConfigError(
                "JWT auth needs [server] jwt_issuer and jwt_audience: a token is checked "
                "against both (--jwt-issuer, --jwt-audience)"
            )
        weak = sorted(set(algorithms) - _ASYMMETRIC)
        if weak or not algorithms:
            raise ConfigError(
                f"[server] jwt_algorithms: {', '.join(weak) or 'none given'}; only asymmetric "
                f"algorithms verify with a public key ({', '.join(sorted(_ASYMMETRIC))})"
            )
        self.issuer = issuer
        self.audience = audience
        self.algorithms = list(algorithms)
        self.leeway_s = leeway_s
        self.tenant_claim = tenant_claim
        self._key: Any = None
        self._jwks: jwt.PyJWKClient | None = None
        if public_key:
            try:
                self._key = load_pem_public_key(public_key.encode())
            except (ValueError, TypeError) as exc:
                message = f"[server] jwt_public_key is not a PEM public key: {exc}"
                raise ConfigError(message) from None
        else:
            self._jwks = jwt.PyJWKClient(
                jwks_url,
                cache_keys=True,
                lifespan=JWKS_LIFESPAN_S,
                timeout=JWKS_TIMEOUT_S,
                cooldown_duration=refresh_cooldown_s,
            )

    @classmethod
    def from_config(cls, config: ServerConfig) -> JwtVerifier | None:
        """The verifier ``config`` describes, or ``None`` when it configures no JWTs."""
        key = config.jwt_public_key
        if config.jwt_public_key_file is not None:
            if key:
                raise ConfigError("[server] set jwt_public_key or jwt_public_key_file, not both")
            try:
                key = Path(config.jwt_public_key_file).expanduser().read_text()
            except OSError as exc:
                raise ConfigError(f"[server] jwt_public_key_file: {exc}") from None
        if not key and not config.jwks_url:
            return None
        return cls(
            issuer=config.jwt_issuer,
            audience=config.jwt_audience,
            public_key=key,
            jwks_url=config.jwks_url,
            algorithms=config.jwt_algorithms,
            leeway_s=config.jwt_leeway_s,
            tenant_claim=config.jwt_tenant_claim,
            refresh_cooldown_s=config.jwks_refresh_cooldown_s,
        )

    async def verify(self, token: str) -> Claims:
        """The claims of ``token``; raises :class:`InvalidCredential` saying why not."""
        try:
            key = self._key
            if self._jwks is not None:
                signing = await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)
                key = signing.key
            claims = jwt.decode(
                token,
                key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidCredential("the JWT has expired") from None
        except jwt.InvalidAudienceError:
            raise InvalidCredential(f"the JWT is not for audience {self.audience!r}") from None
        except jwt.InvalidIssuerError:
            raise InvalidCredential(f"the JWT is not from issuer {self.issuer!r}") from None
        except jwt.ImmatureSignatureError:
            raise InvalidCredential("the JWT is not valid yet") from None
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidCredential(f"the JWT has no {exc.claim!r} claim") from None
        except jwt.PyJWKClientConnectionError as exc:
            message = f"the identity provider's keys are unreachable: {exc}"
            raise InvalidCredential(message) from None
        except jwt.PyJWTError as exc:  # bad signature, unknown kid, wrong algorithm, garbage
            raise InvalidCredential(f"the JWT does not verify: {exc}") from None
        return self._claims(claims)

    def _claims(self, claims: dict[str, Any]) -> Claims:
        sub = claims["sub"]
        if not isinstance(sub, str) or not sub:
            raise InvalidCredential("the JWT's 'sub' claim is not a string")
        tenant = None
        if self.tenant_claim:
            value = claims.get(self.tenant_claim)
            if not isinstance(value, str):
                raise InvalidCredential(f"the JWT has no {self.tenant_claim!r} claim (the tenant)")
            tenant = value
        name = next(
            (
                claims[k]
                for k in ("preferred_username", "nickname", "name")
                if isinstance(claims.get(k), str) and claims[k]
            ),
            sub,
        )
        email = claims.get("email") if isinstance(claims.get("email"), str) else ""
        return Claims(
            subject=f"{self.issuer}|{sub}",
            name=name,
            email=email or "",
            expires_at=float(claims["exp"]),
            scopes=_roost_scopes(claims),
            tenant=tenant,
            raw=claims,
        )


def looks_like_jwt(credential: str) -> bool:
    """Whether ``credential`` has a JWT's shape (three base64url parts)."""
    return credential.count(".") == 2 and credential[:2] == "ey"


def _roost_scopes(claims: dict[str, Any]) -> tuple[str, ...]:
    """The roost scopes in an OAuth ``scope`` (space-separated) or ``scp`` (a list) claim."""
    given = claims.get("scope", claims.get("scp", ""))
    words = given.split() if isinstance(given, str) else given if isinstance(given, list) else []
    return tuple(sorted({w for w in words if isinstance(w, str) and w in SCOPES}))


__all__ = ["Claims", "InvalidCredential", "JwtVerifier", "looks_like_jwt"]
