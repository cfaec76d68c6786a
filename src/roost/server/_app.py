"""The API server's app: the routers, their dependencies, errors and limits."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from roost.auth import Authenticator
from roost.config import ServerConfig
from roost.platform import PlatformAPI
from roost.server._auth import Authenticate
from roost.server._deps import ServerState
from roost.server._errors import install_error_handlers
from roost.server._limits import BodyLimit
from roost.server._ratelimit import RateLimiter
from roost.server.routes import a2a as a2a_routes
from roost.server.routes import (
    agents,
    identity,
    models,
    openai,
    responses,
    runs,
    secrets,
    sessions,
)

DESCRIPTION = """\
Roost as a network service: deploy agents, start and stream runs, browse sessions.

* `/api/v1/...`: the native API. Errors are `{"error": {"code", "message", "details"}}`.
* `/v1/...`: OpenAI-compatible; a model is a deployed agent.

Every route needs `Authorization: Bearer <token>`: a personal access token
(`roost token create`) or the admin token. A token's
scopes bound what it may do: `read` for GET, `<area>:write` for changes.
"""


def create_app(platform: PlatformAPI, config: ServerConfig, auth: Authenticator) -> FastAPI:
    """The API on ``platform``: everything it serves comes from the platform's stores,
    Temporal and bus, so any number of replicas behave as one."""
    app = FastAPI(title="roost", version="1", description=DESCRIPTION)
    app.state.roost = ServerState(platform=platform, auth=auth, config=config)
    install_error_handlers(app)
    for module in (agents, runs, sessions, models, secrets, identity, openai, responses):
        app.include_router(module.router)
    app.include_router(a2a_routes.router)
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)
    # outside the body limit: a caller without a valid token gets nothing read
    app.add_middleware(
        Authenticate,
        authenticator=auth,
        audit=auth.store,
        limiter=RateLimiter(config.rate_limit_per_s, config.rate_limit_burst),
    )
    if config.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=config.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Roost-Session"],
        )
    return app


__all__ = ["create_app"]
