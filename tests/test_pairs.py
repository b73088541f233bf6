"""Trajectory- and step-level pair construction: each threshold at, just above and just below its value."""

import pytest

from hpl.pairs import EmptyPairsError, FilterReport, step_pairs, trajectory_pairs

OPENING = [
    {"from": "human", "value": "instruction"},
    {"from": "gpt", "value": "OK"},
    {"from": "human", "value": "task"},
]


def _traj(tid, reward, n_steps, tag="e"):
    turns = list(OPENING)
    for i in range(n_steps):
        turns.append({"from": "gpt", "value": f"Thought: {tag}{i}\nAction: act {tag}{i}"})
        turns.append({"from": "human", "value": f"Observation: o{tag}{i}"})
    return {"id": tid, "conversations": turns[:-1], "reward": reward}


@pytest.mark.parametrize("agent_reward, kept", [(0.99, False), (0.98999, True), (0.991, False), (0.0, True)])
def test_trajectory_gap_threshold(agent_reward, kept):
    expert = {"t": _traj("t", 1.0, 3)}
    pairs, report = trajectory_pairs(expert, [_traj("t", agent_reward, 2, tag="a")], min_gap=0.01)
    assert (len(pairs) == 1) is kept and report.candidates == 1
    if kept:
        pair = pairs[0]
        assert pair["prompt"] == OPENING
        assert pair["chosen"][0]["value"].endswith("act e0") and pair["rejected"][0]["value"].endswith(
            "act a0"
        )
        assert pair["chosen"][-1]["from"] == "gpt" and pair["rejected"][-1]["from"] == "gpt"
    else:
        assert report.failed == {"reward gap > 0.01": 1}


def _step(agent_reward=0.0, agent_mc=0.2, expert_mc=0.6, step=1):
    return {
        "task_id": "t",
        "step": step,
        "agent_turns": [{"from": "gpt", "value": "Thought: x\nAction: bad"}],
        "agent_reward": agent_reward,
        "agent_mc": agent_mc,
        "expert_mc": expert_mc,
    }


@pytest.mark.parametrize(
    "record, reason",
    [
        (_step(agent_mc=0.3, expert_mc=0.6), "MC value gap > 0.3"),  # gap exactly 0.3: dropped
        (_step(agent_mc=0.29, expert_mc=0.6), None),  # just above: kept
        (_step(agent_mc=0.31, expert_mc=0.6), "MC value gap > 0.3"),  # just below: dropped
        (_step(agent_reward=0.99), "final reward gap > 0.01"),  # final gap exactly 0.01
        (_step(agent_reward=0.989), None),
        (_step(agent_reward=0.995), "final reward gap > 0.01"),
    ],
)
def test_step_thresholds(record, reason):
    expert = {"t": _traj("t", 1.0, 4)}
    pairs, report = step_pairs(expert, [record], final_gap=0.01, mc_gap=0.3)
    if reason is None:
        assert len(pairs) == 1
        pair = pairs[0]
        assert pair["prompt"] == expert["t"]["conversations"][:5]  # up to the observation after step 0
        assert pair["prompt"][-1]["from"] == "human"
        assert pair["chosen"] == expert["t"]["conversations"][5:]  # the expert's whole remaining continuation
        assert pair["rejected"] == record["agent_turns"]
    else:
        assert pairs == [] and report.failed == {reason: 1}


def test_empty_pairs_error_reports_counts_per_threshold():
    report = FilterReport(
        "step", candidates=7, kept=0, failed={"MC value gap > 0.3": 5, "final reward gap > 0.01": 2}
    )
    err = EmptyPairsError(report, source="results/x/pairs/step.jsonl")
    assert "no step pair passed the thresholds in results/x/pairs/step.jsonl" in str(err)
    assert "5 failed MC value gap > 0.3" in str(err) and "2 failed final reward gap > 0.01" in str(err)
