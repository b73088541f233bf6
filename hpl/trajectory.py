"""Trajectories and preference pairs in the ETO/IPR conversation schema (REFERENCE.md section 2).

A trajectory:
    {"id": str, "conversations": [{"from": "human"|"gpt", "value": str}, ...], "reward": float, ...meta}
with turns: human = instruction, gpt = "OK", human = first observation (with the task), then alternating
gpt = "Thought: ...\\nAction: ..." and human = "Observation: ...".

The JSON schemas below are the contract; `validate_trajectory` checks one record and names what is wrong.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import jsonschema

from hpl import react

TURN_SCHEMA = {
    "type": "object",
    "required": ["from", "value"],
    "properties": {"from": {"enum": ["human", "gpt"]}, "value": {"type": "string"}},
}

TRAJECTORY_SCHEMA = {
    "type": "object",
    "required": ["id", "conversations", "reward"],
    "properties": {
        "id": {"type": "string", "minLength": 1},
        "conversations": {"type": "array", "minItems": 3, "items": TURN_SCHEMA},
        "reward": {"type": "number"},
    },
}

PAIR_SCHEMA = {
    "type": "object",
    "required": ["id", "prompt", "chosen", "rejected"],
    "properties": {
        "id": {"type": "string", "minLength": 1},
        "prompt": {"type": "array", "minItems": 1, "items": TURN_SCHEMA},
        "chosen": {"type": "array", "minItems": 1, "items": TURN_SCHEMA},
        "rejected": {"type": "array", "minItems": 1, "items": TURN_SCHEMA},
    },
}


class SchemaError(ValueError):
    """A record does not follow the conversation schema; the message names the record and the problem."""


def _check(record: Any, schema: dict, what: str) -> None:
    try:
        jsonschema.validate(record, schema)
    except jsonschema.ValidationError as err:
        rid = record.get("id", "?") if isinstance(record, dict) else "?"
        where = "/".join(str(p) for p in err.absolute_path) or "(top)"
        raise SchemaError(f"{what} {rid!r}: {where}: {err.message}") from None


def validate_trajectory(record: Any) -> None:
    """Raise SchemaError unless `record` is a well-formed trajectory (alternating turns included)."""
    _check(record, TRAJECTORY_SCHEMA, "trajectory")
    roles = [turn["from"] for turn in record["conversations"]]
    expected = ["human" if i % 2 == 0 else "gpt" for i in range(len(roles))]
    if roles != expected:
        raise SchemaError(f"trajectory {record['id']!r}: turns must alternate human/gpt starting with human")


def validate_pair(record: Any) -> None:
    """Raise SchemaError unless `record` is a well-formed preference pair."""
    _check(record, PAIR_SCHEMA, "pair")
    for side in ("chosen", "rejected"):
        if record[side][-1]["from"] != "gpt":
            raise SchemaError(f"pair {record['id']!r}: {side} must end with a gpt turn")
    if record["prompt"][-1]["from"] != "human":
        raise SchemaError(f"pair {record['id']!r}: prompt must end with a human turn")


OPENING_TURNS = 3  # instruction, "OK", first observation (the task): every conversation starts so


def new_conversation(instruction: str, first_observation: str) -> list[dict[str, str]]:
    """The opening turns of every episode: instruction, "OK", first observation."""
    return [
        {"from": "human", "value": instruction},
        {"from": "gpt", "value": "OK"},
        {"from": "human", "value": first_observation},
    ]


def agent_turns(conversations: list[dict[str, str]]) -> list[str]:
    """The agent's ReAct turns (everything after the opening "OK")."""
    return [turn["value"] for turn in conversations[OPENING_TURNS:] if turn["from"] == "gpt"]


def actions_of(conversations: list[dict[str, str]]) -> list[str | None]:
    """The parsed action of each agent turn (None where a turn has none)."""
    return [react.parse_action(value) for value in agent_turns(conversations)]


def build_trajectory(
    task_id: str,
    instruction: str,
    first_observation: str,
    steps: Iterable[tuple[str, str]],
    reward: float,
    observation_prefix: str = react.OBSERVATION_PREFIX,
    **meta: Any,
) -> dict[str, Any]:
    """A trajectory record from (agent reply, observation) steps (`observation_prefix`: the env's)."""
    conversations = new_conversation(instruction, first_observation)
    for reply, observation in steps:
        conversations.append({"from": "gpt", "value": reply})
        conversations.append(
            {"from": "human", "value": react.format_observation(observation, observation_prefix)}
        )
    # a finished episode ends on the agent's turn: the last observation carries no training signal
    if len(conversations) > OPENING_TURNS and conversations[-1]["from"] == "human":
        conversations.pop()
    return {"id": task_id, "conversations": conversations, "reward": float(reward), **meta}
