"""Who may do what: principals, scopes, personal access tokens, verifying credentials.

Users, tokens and the audit log are stored by :class:`roost.stores.SqlPrincipalStore`;
this package decides what a credential means: an access token, or a JWT of an identity
provider. See docs/security.md.
"""

from roost.auth._authenticator import (
    ADMIN,
    DEFAULT_CACHE_S,
    DEFAULT_TENANT,
    Authenticator,
    principal_of,
)
from roost.auth._grants import (
    GRANT_TTL_S,
    GrantError,
    GrantSigner,
    GrantVerifier,
    load_signer,
    load_verifier,
    write_grant_keys,
)
from roost.auth._jwt import Claims, InvalidCredential, JwtVerifier, looks_like_jwt
from roost.auth._principal import DEFAULT_SCOPES, SCOPES, Principal, Role, ScopeError, check_scopes
from roost.auth._tokens import PREFIX, display_prefix, is_well_formed, mint_token, token_hash

__all__ = [
    "ADMIN",
    "DEFAULT_CACHE_S",
    "DEFAULT_SCOPES",
    "DEFAULT_TENANT",
    "GRANT_TTL_S",
    "PREFIX",
    "SCOPES",
    "Authenticator",
    "Claims",
    "GrantError",
    "GrantSigner",
    "GrantVerifier",
    "InvalidCredential",
    "JwtVerifier",
    "Principal",
    "Role",
    "ScopeError",
    "check_scopes",
    "display_prefix",
    "is_well_formed",
    "load_signer",
    "load_verifier",
    "looks_like_jwt",
    "mint_token",
    "principal_of",
    "token_hash",
    "write_grant_keys",
]
