"""Durable agent runs on Temporal.

An agent run is a workflow (id = invocation id); every call the agent makes through its
context is an activity. :class:`TemporalExecutor` implements roost's executor contract, so
the harness, the CLI and agent code are the same whether runs are durable or in-process.

Without a configured Temporal address, local mode runs its own server: the *embedded* one,
one per ``ROOST_HOME`` and outliving the roost process that starts it
(:func:`ensure_embedded_temporal`, :func:`embedded_temporal_status`,
:func:`stop_embedded_temporal`).
"""

from typing import TYPE_CHECKING

from roost._lazy import lazy_exports

if TYPE_CHECKING:
    from roost.workflows._activities import RunActivities
    from roost.workflows._embedded import (
        EmbeddedTemporal,
        embedded_temporal_status,
        ensure_embedded_temporal,
        stop_embedded_temporal,
    )
    from roost.workflows._errors import TERMINAL_CODES, retry_policy
    from roost.workflows._executor import TemporalExecutor, connect_temporal
    from roost.workflows._workflow import (
        LOCAL_CALLS,
        WORKFLOW_NAME,
        AgentRunWorkflow,
        RunInput,
        RunOptions,
        WorkflowDispatcher,
    )

# Names load on first use: the embedded server's launcher (which the CLI and dev tooling
# use) must not pull in temporalio and the durable-run machinery with it.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "RunActivities": "._activities",
        "EmbeddedTemporal": "._embedded",
        "embedded_temporal_status": "._embedded",
        "ensure_embedded_temporal": "._embedded",
        "stop_embedded_temporal": "._embedded",
        "TERMINAL_CODES": "._errors",
        "retry_policy": "._errors",
        "TemporalExecutor": "._executor",
        "connect_temporal": "._executor",
        "LOCAL_CALLS": "._workflow",
        "WORKFLOW_NAME": "._workflow",
        "AgentRunWorkflow": "._workflow",
        "RunInput": "._workflow",
        "RunOptions": "._workflow",
        "WorkflowDispatcher": "._workflow",
    },
)

__all__ = [
    "LOCAL_CALLS",
    "TERMINAL_CODES",
    "WORKFLOW_NAME",
    "AgentRunWorkflow",
    "EmbeddedTemporal",
    "RunActivities",
    "RunInput",
    "RunOptions",
    "TemporalExecutor",
    "WorkflowDispatcher",
    "connect_temporal",
    "embedded_temporal_status",
    "ensure_embedded_temporal",
    "retry_policy",
    "stop_embedded_temporal",
]
