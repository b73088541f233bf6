"""Fixed heuristic segmenters (paper section 3.3.2): blind to content, the baselines for the others."""

from __future__ import annotations

import math


def _chunks(n_actions: int, size: int) -> list[list[int]]:
    return [[start, min(start + size, n_actions) - 1] for start in range(0, n_actions, size)]


def fixed_n(n_actions: int, N: int = 3) -> list[list[int]]:
    """About N equal groups: chunks of ceil(n / N) actions, so there may be fewer than N groups.

    >>> fixed_n(7)
    [[0, 2], [3, 5], [6, 6]]
    >>> fixed_n(4)   # chunk size 2: two groups, not three
    [[0, 1], [2, 3]]
    """
    if N < 1:
        raise ValueError(f"Fixed-N needs N >= 1, got {N}")
    if n_actions <= 0:
        return []
    return _chunks(n_actions, math.ceil(n_actions / N))


def fixed_k(n_actions: int, K: int = 3) -> list[list[int]]:
    """Groups of K consecutive actions; the last one may be shorter.

    >>> fixed_k(7)
    [[0, 2], [3, 5], [6, 6]]
    """
    if K < 1:
        raise ValueError(f"Fixed-K needs K >= 1, got {K}")
    if n_actions <= 0:
        return []
    return _chunks(n_actions, K)
