"""Durable agent runs on Temporal.

An agent run is a workflow (id = invocation id); every call the agent makes through its
context is an activity. :class:`TemporalExecutor` implements roost's executor contract, so
the harness, the CLI and agent code are the same whether runs are durable or in-process.
"""

from roost.workflows._activities import RunActivities
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

__all__ = [
    "LOCAL_CALLS",
    "TERMINAL_CODES",
    "WORKFLOW_NAME",
    "AgentRunWorkflow",
    "RunActivities",
    "RunInput",
    "RunOptions",
    "TemporalExecutor",
    "WorkflowDispatcher",
    "connect_temporal",
    "retry_policy",
]
