"""The environment variables through which roostd tells a worker process who it is.

Their own module, so that the plan (which sets them) and the role runners (which read them)
do not import each other.
"""

from __future__ import annotations

ROLE_ENV = "ROOST_WORKER_ROLE"
INDEX_ENV = "ROOST_WORKER_INDEX"
ENGINE_ENV = "ROOST_WORKER_ENGINE"  # an inference / embedding worker of one engine only
