"""Shards: a generation job (evaluation, exploration, RFT samples, step-level MC rollouts) split into
`generation.shards` jobs that a cluster runs side by side, and their outputs gathered into the file the
unsharded job writes.

Shard i of n takes items i, i + n, i + 2n, ... of the job's ordered work list (tasks, runs or expert
trajectories). Sampling draws from a stream named by each episode's run id and turn (`hpl.policy`), and
step positions are drawn per trajectory, so an episode does not depend on which shard or batch it ran in:
the gathered file equals the unsharded one (tests/test_sharding.py runs both).

The file a job writes is always made by the same rule, whatever the number of shards: unsharded, it plays
its episodes; sharded, its inputs are its shard files (`<name>.shard<i>of<n><ext>`, kept beside it) and it
gathers them. A finished file keeps the shard files it was gathered from as its inputs
(`planned_shards`), so changing `generation.shards` re-plans only the files still to be made: Snakemake's
params, code and input-set records of a finished file do not change with it.
"""

from __future__ import annotations

import re
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


def job_shard(wildcards: Any) -> tuple[int, int]:
    """(this job's shard, number of shards): `shard`'s arguments in a generation job, from the shard
    file's name (wildcards `shard` and `shards`); (0, 1) for a job that plays all of its work."""
    if "shard" not in wildcards.keys():
        return 0, 1
    return int(wildcards.shard), int(wildcards.shards)


def shard_paths(path: str | Path, count: int) -> list[str]:
    """The files the `count` shards of a job whose output is `path` write (none when count <= 1)."""
    path = Path(path)
    return (
        [str(path.with_name(f"{path.stem}.shard{i}of{count}{path.suffix}")) for i in range(count)]
        if count > 1
        else []
    )


def kept_shards(path: str | Path) -> list[str]:
    """The shard files beside `path` that it was gathered from: the newest complete set (all i < n of
    one n); none if `path` was written unsharded."""
    path = Path(path)
    pattern = re.compile(rf"{re.escape(path.stem)}\.shard(\d+)of(\d+){re.escape(path.suffix)}")
    found: dict[int, set[int]] = {}
    for candidate in path.parent.glob(f"{path.stem}.shard*of*{path.suffix}"):
        match = pattern.fullmatch(candidate.name)
        if match:
            found.setdefault(int(match.group(2)), set()).add(int(match.group(1)))
    complete = [shard_paths(path, n) for n, seen in found.items() if seen == set(range(n)) and n > 1]
    if not complete:
        return []
    return max(complete, key=lambda files: max(Path(f).stat().st_mtime for f in files))


def planned_shards(path: str | Path, count: int) -> list[str]:
    """The shard files a job's output `path` is gathered from: the kept ones once `path` exists, else
    the split that `count` (generation.shards) makes. A changed count never re-plans a finished file."""
    return kept_shards(path) if Path(path).exists() else shard_paths(path, count)


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


def gather_outputs(smk: Any, log: Any, order: Sequence[str] | None = None) -> bool:
    """A generation job whose inputs are shard files (`<output>_shards` for each named output): write
    each output from its shards and return True. False when the job has no shards and plays itself."""
    parts = {name: list(smk.input.get(f"{name}_shards", []) or []) for name in smk.output.keys()}
    if not any(parts.values()):
        return False
    for name, paths in parts.items():
        rows = gather_jsonl(paths, smk.output[name], order)
        log.info("%s: %d rows gathered from %d shards", smk.output[name], rows, len(paths))
    return True
