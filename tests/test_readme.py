"""README.md's agent SDK example and its unit test run as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


async def test_the_sdk_example_passes_its_readme_unit_test() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    agent = next(b for b in blocks if "async def run(ctx: AgentContext" in b)
    test = next(b for b in blocks if "AgentTestEnvironment(" in b)
    namespace: dict[str, object] = {}
    exec(compile(agent + "\n" + test, str(README), "exec"), namespace)
    await namespace["test_summary"]()  # type: ignore[operator]
