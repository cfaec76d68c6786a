"""``roost doctor``: checks that this installation can do its job, each with its fix.

It checks the Python version, ``ROOST_HOME``, sqlite-vec, that each embedded engine loads
its default model and generates or embeds (in a child process, so a native crash is named
instead of suffered), that the Temporal, NATS and Postgres binaries start, and that the
external services the configuration names (NATS, Postgres, Temporal, a deployment's harness)
answer.
"""

from __future__ import annotations

from roost.doctor._checks import CheckResult, run_checks

__all__ = ["CheckResult", "run_checks"]
