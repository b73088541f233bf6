"""InterCode-SQL's reward: how much of the gold result the agent's result reproduces.

InterCode (princeton-nlp/intercode, `SqlEnv.get_reward`) scores the result rows of the agent's latest query
against the rows of the gold query:

- every row is stringified (`str(row)`), so values compare the way the driver prints them;
- the rows are multisets: reward = |A ∩ G| / |A ∪ G| with Counter intersection (min of counts) and
  max-union (max of counts); two empty results score 1 (nothing asked, nothing given);
- an agent "result" that is not a list of rows (an error, or no query yet) scores 0.

InterCode's newer code also scales the IoU by a Kendall tau between the agent's and the gold ordering of the
shared rows (rounded to 2 decimals). Spider's gold queries mostly do not fix an order, so that scaling
penalises correct answers in another order; it is available as `order_scaling=True` and off by default, as
in the paper's metric ("IoU of the submitted query's result set with the gold result set").
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any


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
    """`rows` restricted to the multiset `shared`, keeping their order (first occurrences first)."""
    budget = Counter(shared)
    kept = []
    for row in rows:
        if budget[row] > 0:
            budget[row] -= 1
            kept.append(row)
    return kept


def kendall_tau_b(x: Sequence[Any], y: Sequence[Any]) -> float:
    """Kendall's tau-b of paired sequences (NaN when either side is constant), as scipy computes it.

    Quadratic in the length; the shared rows of Spider results number at most a few thousand.
    """
    n = len(x)
    concordant = discordant = ties_x = ties_y = 0
    for i in range(n):
        for j in range(i + 1, n):
            dx = (x[i] > x[j]) - (x[i] < x[j])
            dy = (y[i] > y[j]) - (y[i] < y[j])
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif dx == dy:
                concordant += 1
            else:
                discordant += 1
    denominator = math.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    if denominator == 0:
        return math.nan
    return (concordant - discordant) / denominator


def order_scaled(reward: float, agent_rows: Sequence[Any], gold_rows: Sequence[Any]) -> float:
    """InterCode's order scaling: reward * tau between the two orderings of the shared rows.

    As in InterCode, tau is taken between the i-th shared row of the agent and the i-th shared row of the
    gold result (compared as strings); NaN (fewer than two distinct rows) leaves the reward unscaled.
    """
    agent = _stringified(agent_rows)
    gold = _stringified(gold_rows)
    shared = Counter(agent) & Counter(gold)
    if not shared:
        return reward
    tau = kendall_tau_b(_shared_in_order(agent, shared), _shared_in_order(gold, shared))
    if math.isnan(tau):
        return reward
    return round(tau * reward, 2)


def score(agent_rows: Sequence[Any] | None, gold_rows: Sequence[Any], order_scaling: bool = False) -> float:
    """The episode reward for the agent's latest result."""
    reward = iou(agent_rows, gold_rows)
    if order_scaling and agent_rows is not None and reward > 0:
        reward = order_scaled(reward, agent_rows, gold_rows)
    return float(reward)
