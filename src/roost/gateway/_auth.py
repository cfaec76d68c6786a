"""Which user a daemon's token stands for: a personal access token with the ``daemon`` scope
(``roost daemon register`` makes one), checked against the platform's principal store."""

from __future__ import annotations

from roost.auth import Authenticator, InvalidCredential
from roost.gateway._hub import Authenticate


def daemon_authenticator(auth: Authenticator) -> Authenticate:
    """An :data:`Authenticate` over ``auth``: the token's user id, or :class:`PermissionError`
    saying why not (unknown, expired, revoked, a disabled user, no ``daemon`` scope)."""

    async def authenticate(token: str) -> str:
        if not token:
            raise PermissionError("no token: the daemon sends `authorization: Bearer <token>`")
        try:
            principal = await auth.authenticate(token)
        except InvalidCredential as exc:
            raise PermissionError(str(exc)) from None
        if principal is None:
            raise PermissionError("the token is unknown, expired or revoked")
        if not principal.allows("daemon"):
            raise PermissionError(
                "the token lacks the 'daemon' scope (`roost daemon register` makes one)"
            )
        return principal.id

    return authenticate
