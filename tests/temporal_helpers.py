"""A workflow for tests against a real Temporal server: GreetWorkflow and its activity."""

from __future__ import annotations

import uuid
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker


@activity.defn
async def compose_greeting(name: str) -> str:
    return f"hello, {name}"


# Unsandboxed: the sandbox would re-import this module for every workflow run.
@workflow.defn(sandboxed=False)
class GreetWorkflow:
    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(
            compose_greeting, name, start_to_close_timeout=timedelta(seconds=10)
        )


async def greet(client: Client, workflow_id: str) -> str:
    """Run GreetWorkflow to completion with a worker of its own."""
    task_queue = f"test-{uuid.uuid4().hex[:12]}"
    async with Worker(
        client, task_queue=task_queue, workflows=[GreetWorkflow], activities=[compose_greeting]
    ):
        return await client.execute_workflow(
            GreetWorkflow.run, "roost", id=workflow_id, task_queue=task_queue
        )
