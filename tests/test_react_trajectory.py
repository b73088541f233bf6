"""Prompt building, action parsing and the conversation schema."""

import pytest

from hpl import react
from hpl.trajectory import SchemaError, actions_of, build_trajectory, validate_pair, validate_trajectory


@pytest.mark.parametrize(
    "reply, action",
    [
        ("Thought: I need a mug.\nAction: go to desk 1", "go to desk 1"),
        ("Action: open drawer 2   ", "open drawer 2"),
        ("Thought: a\nAction: look\nThought: b\nAction: take mug 1 from desk 1", "take mug 1 from desk 1"),
        ("Thought: ok\nAction: go to desk 1\nObservation: hallucinated", "go to desk 1"),
        ("Thought: no action here", None),
        ("Thought: empty\nAction:   ", None),
        ("", None),
    ],
)
def test_parse_action(reply, action):
    assert react.parse_action(reply) == action


def test_format_and_parse_round_trip():
    turn = react.format_turn("the apple is in the fridge", "open fridge 1")
    assert react.parse_action(turn) == "open fridge 1"
    assert react.parse_thought(turn) == "the apple is in the fridge"


def _trajectory():
    return build_trajectory(
        "t1",
        "instruction",
        "You are in a room. Your task is to: x.",
        [
            (react.format_turn("go", "go to desk 1"), "On the desk 1, you see a mug 1."),
            (react.format_turn("take", "take mug 1 from desk 1"), "You pick up the mug 1."),
        ],
        reward=1.0,
        task_type="Pick",
    )


def test_built_trajectory_follows_eto_layout():
    traj = _trajectory()
    validate_trajectory(traj)
    turns = traj["conversations"]
    assert [t["from"] for t in turns] == ["human", "gpt", "human", "gpt", "human", "gpt"]
    assert turns[1]["value"] == "OK"
    assert turns[4]["value"] == "Observation: On the desk 1, you see a mug 1."
    assert actions_of(turns) == ["go to desk 1", "take mug 1 from desk 1"]
    assert traj["task_type"] == "Pick" and traj["reward"] == 1.0


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda t: t.pop("reward"), "'reward' is a required property"),
        (lambda t: t["conversations"][1].update({"from": "assistant"}), "conversations/1/from"),
        (lambda t: t["conversations"].insert(1, {"from": "human", "value": "x"}), "alternate"),
        (lambda t: t.update({"id": ""}), "id"),
    ],
)
def test_schema_errors_name_the_problem(mutate, message):
    traj = _trajectory()
    mutate(traj)
    with pytest.raises(SchemaError, match=message):
        validate_trajectory(traj)


def test_pair_schema():
    turns = _trajectory()["conversations"]
    pair = {"id": "p", "prompt": turns[:3], "chosen": turns[3:4], "rejected": turns[3:4]}
    validate_pair(pair)
    with pytest.raises(SchemaError, match="chosen must end with a gpt turn"):
        validate_pair({**pair, "chosen": turns[3:5]})
    with pytest.raises(SchemaError, match="prompt must end with a human turn"):
        validate_pair({**pair, "prompt": turns[:2]})
