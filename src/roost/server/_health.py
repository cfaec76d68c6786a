"""The health port: ``/health`` (the process serves) and ``/ready`` (what it depends on
answers). ``/ready`` is 200 only when every check passes; its body names what failed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping

from fastapi import FastAPI
from fastapi.responses import JSONResponse

Check = Callable[[], Awaitable[None]]
"""Raises (anything) when the dependency does not answer."""

CHECK_TIMEOUT_S = 3.0


def health_app(checks: Mapping[str, Check]) -> FastAPI:
    """The health server's app, running ``checks`` (name -> check) on every ``/ready``."""
    app = FastAPI(title="roost health", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        results = await asyncio.gather(*(_run(check) for check in checks.values()))
        report = dict(zip(checks, results, strict=True))
        failed = {name: r for name, r in report.items() if r["status"] != "ok"}
        body = {"status": "ready" if not failed else "not ready", "checks": report}
        return JSONResponse(body, status_code=200 if not failed else 503)

    return app


async def _run(check: Check) -> dict[str, object]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
    except TimeoutError:
        return {"status": "failed", "error": f"no answer within {CHECK_TIMEOUT_S:g}s"}
    except Exception as exc:
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    return {"status": "ok", "ms": round((time.perf_counter() - started) * 1000, 1)}


__all__ = ["Check", "health_app"]
