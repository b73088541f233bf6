"""The dual-layer curriculum (paper section 3.4, Appendix F; REFERENCE.md section 6).

Each group-level pair lands in a bucket (L, D) of a 3x3 grid:

- **length level** L from `group_length` (actions in the rejected group), thresholds (t1, t2), upper bounds
  inclusive: L1 if length <= t1, L2 if length <= t2, else L3. Paper Table 4: (3, 6) for ALFWorld,
  (2, 4) for WebShop and InterCode-SQL (the table's leading 0 is the lower edge of L1).
- **difficulty level** D from the reward gap `difficulty` = expert MC - agent MC, thresholds (d1, d2),
  lower bounds inclusive: D1 (easy, clearly worse negative) if gap >= d1, D2 if d2 <= gap < d1, D3 if
  gap < d2. Paper: (1.0, 0.7, 0.4), i.e. d1 = 0.7, d2 = 0.4. Gaps are differences of means of M rollout
  rewards (3/5 - 1/5 = 0.39999999999999997 in floating point), so they are compared with a 1e-9 tolerance
  that keeps such a gap in the bucket its exact value belongs to.

Training runs phases one after another; the pairs of phase k are those whose bucket entered at phase <= k
(cumulative). Every variant has three phases, so each ablation trains the same number of stages and
Figure 4 (success after each phase) exists for all of them:

| variant      | phase 1           | phase 2                          | phase 3     |
|--------------|-------------------|----------------------------------|-------------|
| `full`       | L1D1              | + L1D2, L2D1                     | all nine    |
| `static`     | all nine          | all nine                         | all nine    |
| `length`     | L1 (any D)        | L1, L2 (any D)                   | all nine    |
| `difficulty` | D1 (any L)        | D1, D2 (any L)                   | all nine    |

`static` is "no curriculum": every phase sees all buckets. Defining it as three identical phases rather
than one keeps its number of training stages (and, at one epoch per phase, its passes over the data)
comparable to the curriculum variants, and gives it a per-phase checkpoint for Figure 4. The single-axis
variants follow the paper's wording ("phases by length level alone"): phase k admits level <= k on that
axis and every level on the other.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

LEVELS = (1, 2, 3)
PHASES = (1, 2, 3)
VARIANTS = ("full", "static", "length", "difficulty")
DEFAULT_LENGTH_THRESHOLDS = (3, 6)  # ALFWorld; WebShop and InterCode-SQL: (2, 4)
DEFAULT_DIFFICULTY_THRESHOLDS = (0.7, 0.4)
GAP_TOLERANCE = 1e-9

# the full curriculum: the phase each bucket (length level, difficulty level) enters
FULL_SCHEDULE = {(1, 1): 1, (1, 2): 2, (2, 1): 2}  # every other bucket: phase 3


def length_level(group_length: int, thresholds: Sequence[int] = DEFAULT_LENGTH_THRESHOLDS) -> int:
    """1 if group_length <= t1, 2 if <= t2, else 3 (upper bounds inclusive)."""
    t1, t2 = thresholds
    if group_length <= t1:
        return 1
    return 2 if group_length <= t2 else 3


def difficulty_level(gap: float, thresholds: Sequence[float] = DEFAULT_DIFFICULTY_THRESHOLDS) -> int:
    """1 (easy) if gap >= d1, 2 if d2 <= gap < d1, 3 (hard) if gap < d2 (lower bounds inclusive)."""
    d1, d2 = thresholds
    if gap >= d1 - GAP_TOLERANCE:
        return 1
    return 2 if gap >= d2 - GAP_TOLERANCE else 3


def _check_thresholds(length_thresholds: Sequence[int], difficulty_thresholds: Sequence[float]) -> None:
    t1, t2 = length_thresholds
    d1, d2 = difficulty_thresholds
    if not t1 < t2:
        raise ValueError(f"length thresholds must increase (t1 < t2), got {tuple(length_thresholds)}")
    if not d1 > d2:
        raise ValueError(
            f"difficulty thresholds must decrease (easy d1 > d2), got {tuple(difficulty_thresholds)}"
        )


def bucket(
    group_length: int,
    gap: float,
    length_thresholds: Sequence[int] = DEFAULT_LENGTH_THRESHOLDS,
    difficulty_thresholds: Sequence[float] = DEFAULT_DIFFICULTY_THRESHOLDS,
) -> tuple[int, int]:
    """(length level, difficulty level) of a pair, each in {1, 2, 3}; (1, 1) is short and easy.

    >>> bucket(3, 0.7), bucket(4, 0.69), bucket(7, 0.39)
    ((1, 1), (2, 2), (3, 3))
    """
    _check_thresholds(length_thresholds, difficulty_thresholds)
    return length_level(group_length, length_thresholds), difficulty_level(gap, difficulty_thresholds)


def phase_of(bucket: tuple[int, int], variant: str = "full") -> int:
    """The first phase (1..3) in which pairs of `bucket` are trained under `variant`."""
    length, difficulty = bucket
    if length not in LEVELS or difficulty not in LEVELS:
        raise ValueError(f"bucket levels must be in 1..3, got {bucket}")
    if variant == "full":
        return FULL_SCHEDULE.get((length, difficulty), 3)
    if variant == "static":
        return 1
    if variant == "length":
        return length
    if variant == "difficulty":
        return difficulty
    raise ValueError(f"unknown curriculum variant {variant!r}; known: {', '.join(VARIANTS)}")


def buckets_in_phase(phase: int, variant: str = "full") -> list[tuple[int, int]]:
    """The buckets trained in `phase` (cumulative), in grid order."""
    _check_phase(phase)
    return [(ll, dl) for ll in LEVELS for dl in LEVELS if phase_of((ll, dl), variant) <= phase]


def _check_phase(phase: int) -> None:
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {PHASES}, got {phase}")


def pair_bucket(
    pair: dict,
    length_thresholds: Sequence[int] = DEFAULT_LENGTH_THRESHOLDS,
    difficulty_thresholds: Sequence[float] = DEFAULT_DIFFICULTY_THRESHOLDS,
) -> tuple[int, int]:
    """The bucket of a group pair record, from its `group_length` and `difficulty` fields."""
    return bucket(pair["group_length"], pair["difficulty"], length_thresholds, difficulty_thresholds)


def annotate(
    pairs: Iterable[dict],
    length_thresholds: Sequence[int] = DEFAULT_LENGTH_THRESHOLDS,
    difficulty_thresholds: Sequence[float] = DEFAULT_DIFFICULTY_THRESHOLDS,
) -> list[dict]:
    """Copies of `pairs` with `length_level`, `difficulty_level` and `phase` ({variant: first phase}) added."""
    out = []
    for pair in pairs:
        levels = pair_bucket(pair, length_thresholds, difficulty_thresholds)
        phases = {variant: phase_of(levels, variant) for variant in VARIANTS}
        out.append({**pair, "length_level": levels[0], "difficulty_level": levels[1], "phase": phases})
    return out


def pairs_for_phase(
    pairs: Iterable[dict],
    phase: int,
    variant: str = "full",
    length_thresholds: Sequence[int] = DEFAULT_LENGTH_THRESHOLDS,
    difficulty_thresholds: Sequence[float] = DEFAULT_DIFFICULTY_THRESHOLDS,
) -> list[dict]:
    """The pairs trained in `phase` under `variant` (cumulative: all buckets entered at or before it)."""
    _check_phase(phase)
    return [
        pair
        for pair in pairs
        if phase_of(pair_bucket(pair, length_thresholds, difficulty_thresholds), variant) <= phase
    ]


def bucket_counts(
    pairs: Iterable[dict],
    length_thresholds: Sequence[int] = DEFAULT_LENGTH_THRESHOLDS,
    difficulty_thresholds: Sequence[float] = DEFAULT_DIFFICULTY_THRESHOLDS,
) -> dict[str, dict[str, int]]:
    """Pairs per bucket as a 3x3 grid: {"L1": {"D1": n, "D2": n, "D3": n}, "L2": ..., "L3": ...}."""
    grid = {f"L{ll}": {f"D{dl}": 0 for dl in LEVELS} for ll in LEVELS}
    for pair in pairs:
        ll, dl = pair_bucket(pair, length_thresholds, difficulty_thresholds)
        grid[f"L{ll}"][f"D{dl}"] += 1
    return grid


def format_grid(counts: dict[str, dict[str, int]], variant: str | None = "full") -> str:
    """The grid as text for logs; with a variant, each cell also shows the phase it enters (p1..p3).

         D1 (easy)    D2    D3 (hard)
    L1   12 p1        5 p2  ...
    """
    header = ["", "D1 (easy)", "D2", "D3 (hard)", "total"]
    rows = [header]
    for ll in LEVELS:
        cells = []
        for dl in LEVELS:
            n = counts[f"L{ll}"][f"D{dl}"]
            cells.append(f"{n} p{phase_of((ll, dl), variant)}" if variant else str(n))
        rows.append([f"L{ll}", *cells, str(sum(counts[f"L{ll}"].values()))])
    totals = [sum(counts[f"L{ll}"][f"D{dl}"] for ll in LEVELS) for dl in LEVELS]
    rows.append(["total", *map(str, totals), str(sum(totals))])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )
