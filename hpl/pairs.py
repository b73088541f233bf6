"""Preference pairs at the trajectory level (ETO) and the step level (IPR), REFERENCE.md sections 3-4.

Pairs are `{"id", "prompt", "chosen", "rejected", ...}` with turns in the conversation schema; chosen and
rejected may span several turns (only the agent's tokens are trained, see `hpl.chat`).

Every threshold is a strict "greater than". Gaps are rounded to 9 decimals first, so a gap that equals a
threshold on paper (1.0 - 0.99 vs 0.01) is treated as equal, not as 0.010000000000000009.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from hpl.trajectory import OPENING_TURNS


def _gap(a: float, b: float) -> float:
    return round(a - b, 9)


@dataclass
class FilterReport:
    """How many candidates each threshold rejected; attached to an empty-pairs error."""

    level: str
    candidates: int = 0
    kept: int = 0
    failed: dict[str, int] = field(default_factory=dict)

    def fail(self, reason: str) -> None:
        self.failed[reason] = self.failed.get(reason, 0) + 1

    def summary(self) -> str:
        reasons = ", ".join(f"{n} failed {why}" for why, n in sorted(self.failed.items())) or "none failed"
        return f"{self.level} pairs: {self.kept} kept of {self.candidates} candidates ({reasons})"

    def as_dict(self) -> dict[str, Any]:
        return {"level": self.level, "candidates": self.candidates, "kept": self.kept, "failed": self.failed}


class EmptyPairsError(ValueError):
    """No pair passed the thresholds: training on nothing is refused, with the counts per threshold."""

    def __init__(self, report: FilterReport, source: str = "") -> None:
        where = f" in {source}" if source else ""
        super().__init__(f"no {report.level} pair passed the thresholds{where}: {report.summary()}")
        self.report = report


def trajectory_pairs(
    expert: dict[str, dict], explored: Iterable[dict], min_gap: float = 0.01
) -> tuple[list[dict], FilterReport]:
    """ETO: (expert, pi_ref) trajectory pairs where the expert's outcome beats the agent's by > min_gap."""
    report = FilterReport("trajectory")
    pairs = []
    for agent in explored:
        task = agent["id"]
        if task not in expert:
            report.fail("no expert trajectory")
            continue
        report.candidates += 1
        gold = expert[task]
        if not _gap(gold["reward"], agent["reward"]) > min_gap:
            report.fail(f"reward gap > {min_gap}")
            continue
        pairs.append(
            {
                "id": f"{task}#traj",
                "task_id": task,
                "prompt": gold["conversations"][:OPENING_TURNS],
                "chosen": gold["conversations"][OPENING_TURNS:],
                "rejected": agent["conversations"][OPENING_TURNS:],
                "chosen_reward": gold["reward"],
                "rejected_reward": agent["reward"],
            }
        )
    report.kept = len(pairs)
    return pairs, report


def prefix_turns(conversations: list[dict], steps: int) -> list[dict]:
    """The conversation up to (and including) the observation after `steps` agent actions."""
    return conversations[: OPENING_TURNS + 2 * steps]


def step_pairs(
    expert: dict[str, dict],
    step_records: Iterable[dict],
    final_gap: float = 0.01,
    mc_gap: float = 0.3,
) -> tuple[list[dict], FilterReport]:
    """IPR: at step j, the expert's remaining continuation vs pi_ref's own continuation.

    Each step record: {"task_id", "step", "agent_turns" (the agent's continuation from step j, ending with
    a gpt turn), "agent_reward" (its final reward), "agent_mc" (MC value after the agent's action at j),
    "expert_mc" (MC value after the expert's action at j)}. The expert's final reward is its trajectory's.
    Kept when expert final - agent final > final_gap and expert MC - agent MC > mc_gap.
    """
    report = FilterReport("step")
    pairs = []
    for rec in step_records:
        task, j = rec["task_id"], int(rec["step"])
        if task not in expert:
            report.fail("no expert trajectory")
            continue
        report.candidates += 1
        gold = expert[task]
        if not _gap(gold["reward"], rec["agent_reward"]) > final_gap:
            report.fail(f"final reward gap > {final_gap}")
            continue
        if not _gap(rec["expert_mc"], rec["agent_mc"]) > mc_gap:
            report.fail(f"MC value gap > {mc_gap}")
            continue
        pairs.append(
            {
                "id": f"{task}#step{j}",
                "task_id": task,
                "step": j,
                "prompt": prefix_turns(gold["conversations"], j),
                "chosen": gold["conversations"][OPENING_TURNS + 2 * j :],
                "rejected": rec["agent_turns"],
                "chosen_reward": gold["reward"],
                "rejected_reward": rec["agent_reward"],
                "chosen_mc": rec["expert_mc"],
                "rejected_mc": rec["agent_mc"],
            }
        )
    report.kept = len(pairs)
    return pairs, report
