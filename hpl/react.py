"""ReAct turns: "Thought: ...\\nAction: ..." text, parsed and written.

The agent answers every observation with a thought and an action (ETO/IPR format). Only the action goes to
the environment: the text after the *last* "Action:" up to the end of that line. A reply with no action is
an invalid step, never a crash.
"""

from __future__ import annotations

import re

#: what ETO/IPR put before an observation in the human turn (WebShop puts a newline instead of the space)
OBSERVATION_PREFIX = "Observation: "

_ACTION = re.compile(r"Action:[ \t]*(.*)")
_THOUGHT = re.compile(r"Thought:[ \t]*(.*?)(?:\n\s*Action:|\Z)", re.S)


def parse_action(reply: str) -> str | None:
    """The action of a ReAct reply, or None when it has no (non-empty) action.

    >>> parse_action("Thought: the mug is here.\\nAction: take mug 1 from desk 1")
    'take mug 1 from desk 1'
    >>> parse_action("I think so.") is None
    True
    """
    matches = _ACTION.findall(reply)
    if not matches:
        return None
    action = matches[-1].strip()
    return action or None


def parse_thought(reply: str) -> str:
    """The thought of a ReAct reply ('' when absent)."""
    match = _THOUGHT.search(reply)
    return match.group(1).strip() if match else ""


def format_turn(thought: str, action: str) -> str:
    """The agent turn for a thought and an action."""
    return f"Thought: {thought}\nAction: {action}"


def format_observation(observation: str, prefix: str = OBSERVATION_PREFIX) -> str:
    """The human turn that answers an action (`prefix`: the environment's `observation_prefix`)."""
    return f"{prefix}{observation}"
