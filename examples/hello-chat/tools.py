"""A tool of this agent's own: any typed Python function in the agent folder."""


def shout(text: str) -> str:
    """Repeat a text in capital letters, for emphasis."""
    return text.upper() + "!"
