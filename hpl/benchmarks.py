"""What the pipeline needs to know about each benchmark, in one place.

A `Benchmark` says which splits are evaluated, how its data is prepared (mirror or official source), how
its environment is built from the config, and how expert trajectories are collected. The rules and
scripts only ever go through this table, so adding a benchmark means adding one entry here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from hpl.envs.base import Environment, make_env
from hpl.mirror import benchmark_mirror


@dataclass(frozen=True)
class Benchmark:
    name: str
    eval_splits: tuple[str, ...]
    train_split: str
    prepare: Callable[[Path, Path | None], dict]  # (dest, mirror folder) -> manifest
    expert: Callable[..., tuple[Iterator[dict], dict]]  # (data_dir, task_ids, settings, workers) -> records, card

    def data_dir(self, resources: str | os.PathLike = "resources") -> Path:
        return Path(resources) / self.name / "data"

    def env(self, data_dir: str | os.PathLike, settings: dict[str, Any]) -> Environment:
        return make_env(self.name, data_dir=str(data_dir), max_turns=settings["max_turns"])

    def eval_tasks(self, settings: dict[str, Any], split: str) -> int | None:
        return settings["eval_tasks"][split]


# --- ALFWorld ---------------------------------------------------------------------------------
def _prepare_alfworld(dest: Path, mirror: Path | None) -> dict:
    from hpl.alfworld.data import prepare_alfworld_data

    root = prepare_alfworld_data(dest, mirror=mirror)
    return {"data_dir": str(root)}


def _alfworld_expert(data_dir: Path, task_ids: list[str], settings: dict, workers: int):
    from hpl.alfworld.expert import collect_expert

    return collect_expert(data_dir, task_ids, source=settings["expert_source"], workers=workers)


BENCHMARKS: dict[str, Benchmark] = {
    "alfworld": Benchmark(
        name="alfworld",
        eval_splits=("seen", "unseen"),
        train_split="train",
        prepare=_prepare_alfworld,
        expert=_alfworld_expert,
    ),
}


def prepare_benchmark(name: str, dest: Path, configured_mirror: str | None) -> dict:
    """Prepare a benchmark's data under `dest`; return the manifest (data folder, task counts)."""
    bench = BENCHMARKS[name]
    manifest = bench.prepare(Path(dest), benchmark_mirror(configured_mirror, name))
    env = make_env(name, data_dir=manifest["data_dir"])
    try:
        manifest["splits"] = {split: len(env.task_ids(split)) for split in (bench.train_split, *bench.eval_splits)}
    finally:
        env.close()
    return {"benchmark": name, **manifest}


class ConfigError(ValueError):
    """A config that passes the schema but is inconsistent; the message names the key."""


def check_config(config: dict) -> None:
    """Cross-key checks the JSON schema cannot express."""
    for model in config["models"]:
        if model not in config["model_specs"]:
            known = ", ".join(sorted(config["model_specs"])) or "none"
            raise ConfigError(f"models: {model!r} has no entry in model_specs (known: {known})")
    for bench in config["benchmarks"]:
        if bench not in BENCHMARKS:
            raise ConfigError(f"benchmarks: unknown benchmark {bench!r} (known: {', '.join(BENCHMARKS)})")
        if bench not in config:
            raise ConfigError(f"benchmarks lists {bench!r} but the config has no {bench!r} section")
