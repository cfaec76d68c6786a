"""The API server: roost as a network service (REST + SSE under ``/api/v1``, the OpenAI API
under ``/v1``), stateless over the platform's stores, Temporal and bus (docs/server.md)."""

from roost.server._app import create_app
from roost.server._gateway import serve_gateway
from roost.server._principal import admin_token
from roost.server._serve import (
    ApiServer,
    Endpoints,
    check_distributed,
    readiness_checks,
    serve_api,
    serve_worker,
)

__all__ = [
    "ApiServer",
    "Endpoints",
    "admin_token",
    "check_distributed",
    "create_app",
    "readiness_checks",
    "serve_api",
    "serve_gateway",
    "serve_worker",
]
