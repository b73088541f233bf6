"""Shards: a generation job (evaluation, exploration, RFT samples, step-level MC rollouts) split into
`generation.shards` jobs that a cluster runs side by side, and their outputs gathered into the file the
unsharded job writes.

Shard i of n takes items i, i + n, i + 2n, ... of the job's ordered work list (tasks, runs or expert
trajectories). Sampling draws from a stream named by each episode's run id and turn (`hpl.policy`), and
step positions are drawn per trajectory, so an episode does not depend on which shard or batch it ran in:
the gathered file equals the unsharded one (tests/test_sharding.py runs both).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from hpl.io import read_jsonl, write_jsonl

T = TypeVar("T")


def shard(items: Sequence[T], index: int, count: int) -> list[T]:
    """Items index, index + count, ... of `items` (shard `index` of `count`, 0-based)."""
    if not 0 <= index < count:
        raise ValueError(f"shard {index} does not exist among {count} shards")
    return list(items)[index::count]


def job_shard(wildcards: Any, config: dict) -> tuple[int, int]:
    """(this job's shard, number of shards): `shard`'s arguments in a generation job. The number is read
    from the config at run time (generation.shards), never a param: sharded results equal unsharded ones."""
    return int(getattr(wildcards, "shard", 0) or 0), int(config["generation"].get("shards", 1))


def interleave(parts: Sequence[Sequence[T]]) -> list[T]:
    """Undo `shard`: element j of part i goes back to position j * len(parts) + i."""
    merged: list[T] = []
    for j in range(max((len(p) for p in parts), default=0)):
        merged += [part[j] for part in parts if j < len(part)]
    return merged


def in_task_order(parts: Sequence[Sequence[dict]], order: Sequence[str]) -> list[dict]:
    """Rows of all parts sorted by their `task_id`'s position in `order`, keeping each shard's row order
    within a task (for files with any number of rows per task, such as the step-level ones)."""
    rank = {task: i for i, task in enumerate(order)}
    rows = [row for part in parts for row in part]
    unknown = sorted({row["task_id"] for row in rows} - rank.keys())
    if unknown:
        raise ValueError(f"rows for tasks outside the job's task list: {', '.join(unknown[:5])}")
    return sorted(rows, key=lambda row: rank[row["task_id"]])  # sorted() is stable


def gather_jsonl(
    shard_paths: Sequence[str | Path], out: str | Path, order: Sequence[str] | None = None
) -> int:
    """Write the unsharded file `out` from its shard files; return the number of rows.

    Without `order` the shards hold one row per work item (episodes) and are interleaved back; with it,
    rows are put in that task order.
    """
    parts: list[list[dict[str, Any]]] = [read_jsonl(p) for p in shard_paths]
    rows = interleave(parts) if order is None else in_task_order(parts, order)
    write_jsonl(out, rows)
    return len(rows)
