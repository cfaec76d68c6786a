"""The size limit of what a durable run hands to Temporal, checked before Temporal sees it.

Temporal refuses a payload over its error limit (2 MiB by default) when the worker
completes a task. Refused inside a workflow task, the task is retried forever and the run
hangs; refused in an activity's result, the activity times out and retries. So roost
measures each value first (a call's request, its answer, a step's result, the run's
output) and fails that one call, at once, with ``payload_too_large`` and a message saying
what to do, while the run itself goes on (and fails only if the agent lets the error out).
"""

from __future__ import annotations

from typing import Any

import msgspec

from roost.protocol import PayloadTooLargeError

TEMPORAL_PAYLOAD_LIMIT = 2 * 1024 * 1024
"""Temporal's default payload error limit (``limit.blobSize.error``)."""
DURABLE_VALUE_LIMIT = TEMPORAL_PAYLOAD_LIMIT - 64 * 1024
"""The most JSON one durable call, answer, step result or run output may be: Temporal's
limit, less room for the envelope around it."""

_encoder = msgspec.json.Encoder()


def check_durable_size(value: Any, what: str) -> None:
    """Raise :class:`~roost.protocol.PayloadTooLargeError` if ``value`` (already plain
    builtins) is over :data:`DURABLE_VALUE_LIMIT` as JSON; ``what`` names it."""
    size = len(_encoder.encode(value))
    if size > DURABLE_VALUE_LIMIT:
        raise PayloadTooLargeError(
            f"{what} is {size / 1e6:.1f} MB as JSON (bytes as base64), over the "
            f"{DURABLE_VALUE_LIMIT / 1e6:.1f} MB one value of a durable run may be "
            "(Temporal's payload limit): keep values smaller (under ~1.5 MB of bytes), or "
            'run in-process ([workflows] engine = "inprocess")',
            size=size,
            limit=DURABLE_VALUE_LIMIT,
        )
