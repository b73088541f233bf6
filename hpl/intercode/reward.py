"""InterCode-SQL's reward: how much of the gold result the agent's result reproduces.

Two rewards (config `intercode_sql.reward`):

- "intercode" (default): the released InterCode's `SqlEnv.get_reward` (PyPI intercode-bench 0.1.22,
  intercode/envs/sql/sql_env.py), which IPR's environment calls and which scored InterCode's published
  trajectories. The multiset IoU below, then, when the two results share rows, scaled by Kendall's tau-b
  between the agent's and the gold ordering of the shared rows, rounded to 2 decimals. A NaN tau (fewer
  than two shared rows, or all shared rows equal) leaves the IoU unscaled and unrounded. A result in the
  reverse order scores -IoU.
- "iou": the multiset IoU alone (order ignored), the paper's wording of the metric.

The IoU: every row is stringified (`str(row)`), rows are multisets, reward = |A ∩ G| / |A ∪ G| with
Counter intersection (min of counts) and max-union (max of counts); two empty results score 1; an agent
"result" that is not a list of rows (an error, or no query yet) scores 0.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

REWARDS = ("intercode", "iou")


def _stringified(rows: Sequence[Any]) -> list[str]:
    return [str(row) for row in rows]


def iou(agent_rows: Sequence[Any] | None, gold_rows: Sequence[Any]) -> float:
    """Multiset intersection over union of stringified rows (both empty = 1, agent None = 0)."""
    if agent_rows is None:
        return 0.0
    agent = Counter(_stringified(agent_rows))
    gold = Counter(_stringified(gold_rows))
    union = agent | gold  # Counter union keeps the max count of each row
    if not union:
        return 1.0
    intersection = agent & gold  # min count of each row
    return sum(intersection.values()) / sum(union.values())


def _shared_in_order(rows: list[str], shared: Counter) -> list[str]:
    """`rows` restricted to the multiset `shared`, keeping their order (InterCode's get_intersect_items)."""
    budget = Counter(shared)
    kept = []
    for row in rows:
        if budget[row] > 0:
            budget[row] -= 1
            kept.append(row)
    return kept


def _tied_pairs(values: Sequence[Any]) -> int:
    return sum(count * (count - 1) // 2 for count in Counter(values).values())


def _strict_inversions(values: list[Any]) -> int:
    """Pairs i < j with values[i] > values[j] (merge sort, O(n log n))."""
    if len(values) < 2:
        return 0
    middle = len(values) // 2
    left, right = values[:middle], values[middle:]
    count = _strict_inversions(left) + _strict_inversions(right)
    left.sort()
    right.sort()
    j = 0
    for value in left:  # for each left value, the right values strictly below it
        while j < len(right) and right[j] < value:
            j += 1
        count += j
    return count


def kendall_tau_b(x: Sequence[Any], y: Sequence[Any]) -> float:
    """Kendall's tau-b of paired sequences as scipy.stats.kendalltau computes it (variant 'b'): NaN for
    empty input or when either side is all ties; the same integer counts and the same float operations
    ((C - D) / sqrt(n0 - n1) / sqrt(n0 - n2), clipped to [-1, 1]), so the value matches to the last bit."""
    size = len(x)
    if size != len(y):
        raise ValueError(f"kendall_tau_b: sequences of different lengths ({size} and {len(y)})")
    total = size * (size - 1) // 2
    x_ties, y_ties, joint_ties = _tied_pairs(x), _tied_pairs(y), _tied_pairs(list(zip(x, y)))
    if size == 0 or x_ties == total or y_ties == total:
        return math.nan
    discordant = _strict_inversions([b for _, b in sorted(zip(x, y))])
    concordant_minus_discordant = total - x_ties - y_ties + joint_ties - 2 * discordant
    tau = concordant_minus_discordant / math.sqrt(total - x_ties) / math.sqrt(total - y_ties)
    return min(1.0, max(-1.0, tau))


def _round2(value: float) -> float:
    """round(numpy.float64, 2) as InterCode's reward does it: numpy multiplies by 100, rounds half to even
    and divides (Python's round(value, 2) differs on a few values)."""
    return round(value * 100) / 100


def order_scaled(reward: float, agent_rows: Sequence[Any], gold_rows: Sequence[Any]) -> float:
    """InterCode's order scaling of an IoU `reward`: round(tau * reward, 2), tau between the i-th shared
    row of the agent and the i-th shared row of the gold result (as strings); NaN tau: unscaled."""
    agent = _stringified(agent_rows)
    gold = _stringified(gold_rows)
    shared = Counter(agent) & Counter(gold)
    if not shared:
        return reward
    tau = kendall_tau_b(_shared_in_order(agent, shared), _shared_in_order(gold, shared))
    if math.isnan(tau):
        return reward
    return _round2(tau * reward)


def score(agent_rows: Sequence[Any] | None, gold_rows: Sequence[Any], reward: str = "intercode") -> float:
    """The episode reward for the agent's latest result under the reward named `reward`."""
    if reward not in REWARDS:
        raise ValueError(f"intercode_sql.reward must be one of {', '.join(REWARDS)}, not {reward!r}")
    value = iou(agent_rows, gold_rows)
    if reward == "intercode" and agent_rows is not None:
        value = order_scaled(value, agent_rows, gold_rows)
    return float(value)
