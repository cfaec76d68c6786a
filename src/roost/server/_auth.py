"""Authentication before routing: every request names a valid credential, or is refused.

It runs ahead of the router, so a caller without a valid token learns nothing about the
API, not even which routes exist (a wrong method or a bad body answers 401, not 405/422).
The principal it finds is kept in the request's state for the :data:`Caller` dependency;
what the principal may do (scopes, roles) is checked by the routers' dependencies.
"""

from __future__ import annotations

import logging
import math

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from roost.auth import Authenticator, InvalidCredential
from roost.protocol import ErrorCode, RoostError
from roost.server._errors import error_response
from roost.server._ratelimit import RateLimiter
from roost.stores import SqlPrincipalStore
from roost.wire import status_for

log = logging.getLogger("roost.server")

#: What anyone may read: the API's own description.
PUBLIC_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
#: Failed authentications recorded in the audit log per client address and minute; beyond
#: it they are refused without a record (so a flood cannot fill the log).
AUDITED_FAILURES_PER_MIN = 10


class Authenticate:
    """ASGI middleware: ``Authorization: Bearer <token>`` on every non-public request."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        authenticator: Authenticator,
        audit: SqlPrincipalStore,
        limiter: RateLimiter,
    ) -> None:
        self.app = app
        self.authenticator = authenticator
        self.audit = audit
        self.limiter = limiter
        self._failures = RateLimiter(AUDITED_FAILURES_PER_MIN / 60, AUDITED_FAILURES_PER_MIN)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            message = "authentication required: send Authorization: Bearer <token>"
            await error_response(request, 401, ErrorCode.AUTH, message)(scope, receive, send)
            return
        refused = "unknown, expired or revoked"
        try:
            principal = await self.authenticator.authenticate(credential)
        except InvalidCredential as exc:
            principal, refused = None, str(exc)
        except RoostError as exc:  # the principal store is unreachable
            log.warning("authentication failed: %s", exc)
            response = error_response(request, status_for(exc), exc.code, exc.message)
            await response(scope, receive, send)
            return
        if principal is None:
            await self._audit_failure(request)
            message = f"invalid token: {refused}"
            await error_response(request, 401, ErrorCode.AUTH, message)(scope, receive, send)
            return
        wait = self.limiter.take(principal.token_id or principal.id)
        if wait:
            retry = str(max(1, math.ceil(wait)))
            response = error_response(
                request, 429, ErrorCode.RATE_LIMITED, f"too many requests: retry in {retry} s",
                headers={"Retry-After": retry},
            )  # fmt: skip
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)

    async def _audit_failure(self, request: Request) -> None:
        client = request.client.host if request.client else "-"
        if self._failures.take(client):
            return
        try:
            await self.audit.record(
                "auth.failed", tenant="-", actor="-", target=request.url.path, ok=False,
                client=client,
            )  # fmt: skip
        except RoostError as exc:
            log.warning("could not audit a failed authentication: %s", exc)


__all__ = ["PUBLIC_PATHS", "Authenticate"]
