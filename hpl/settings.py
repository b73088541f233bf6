"""What each stage's result depends on: small frozen settings drawn from the config.

Snakemake reruns a job when one of its params changes, so a rule's params must hold exactly the keys that
can change its result: then changing `alfworld.dpo_lr` retrains ALFWorld's DPO methods and nothing
upstream of pi_ref, and changing a speed setting reruns nothing. rules/common.smk builds every rule's
params from the dataclasses here (`dataclasses.asdict`), and the scripts rebuild them from the params.

What can never change a result is read at run time from the config instead (`RUNTIME`): how many episodes
or rollouts share a batched policy call, the prefix cache and its prompt-lookup drafts (the same tokens
either way: tests/test_prefix_cache.py), how many shards a generation job is split into (sharded runs equal unsharded ones:
tests/test_sharding.py), and where a server is and how to log in to it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: config keys read at run time, never params (a change reruns nothing)
RUNTIME = {
    "generation": ("parallel_episodes", "prefix_cache", "lookahead", "shards", "server"),
    "exploration": ("lanes",),
    "intercode_sql": ("server",),
}


def params(settings: Any) -> dict[str, Any]:
    """A settings object as a rule's param (plain data: Snakemake stores and compares it)."""
    return asdict(settings)


@dataclass(frozen=True)
class EpisodeSettings:
    """How a benchmark's episodes are played: its turn limit and its environment's options (InterCode-SQL:
    reward, split, truncation reward). Not its SQL server, its task counts or its training settings."""

    max_turns: int
    options: dict = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: dict, bench: str) -> EpisodeSettings:
        from hpl.benchmarks import BENCHMARKS

        section = config.get(bench) or {}
        return cls(section.get("max_turns", 1), BENCHMARKS[bench].env_options(section))

    def section(self, config: dict, bench: str) -> dict[str, Any]:
        """The benchmark section the library's environment functions take: these keys, plus the runtime
        ones (where its server is)."""
        return {"max_turns": self.max_turns, **self.options, **runtime(config, bench)}


@dataclass(frozen=True)
class ExpertSettings:
    """Where the expert data come from and how many training tasks they cover."""

    source: str
    train_tasks: int | None
    episodes: EpisodeSettings
    expert_file: str | None = None  # expert_source import

    @classmethod
    def from_config(cls, config: dict, bench: str) -> ExpertSettings:
        section = config[bench]
        return cls(
            section["expert_source"],
            section.get("train_tasks"),
            EpisodeSettings.from_config(config, bench),
            section.get("expert_file"),
        )

    def section(self, config: dict, bench: str) -> dict[str, Any]:
        """The benchmark section the expert functions take (`expert_source`, `train_tasks`, ...)."""
        own = {"expert_source": self.source, "train_tasks": self.train_tasks, "expert_file": self.expert_file}
        return {**self.episodes.section(config, bench), **own}

    def __post_init__(self) -> None:
        if isinstance(self.episodes, dict):  # rebuilt from params: the nested settings come as a dict
            object.__setattr__(self, "episodes", EpisodeSettings(**self.episodes))


@dataclass(frozen=True)
class GenerationSettings:
    """What a generated reply depends on: the reply budget, the prompt window and the action mode for the
    job's benchmark (one mode, or one per benchmark in the config)."""

    max_new_tokens: int | None
    reply_margin: int
    max_prompt_tokens: int | None
    actions: str

    @classmethod
    def from_config(cls, config: dict, bench: str) -> GenerationSettings:
        generation = config["generation"]
        actions = generation.get("actions", "free")
        return cls(
            generation.get("max_new_tokens"),
            generation.get("reply_margin", 0),
            generation.get("max_prompt_tokens"),
            actions.get(bench, "free") if isinstance(actions, dict) else actions,
        )

    def with_runtime(self, config: dict) -> dict[str, Any]:
        """The `generation` dict hpl.policy takes: these keys plus batch size and prefix cache."""
        return {**asdict(self), **runtime(config, "generation")}


def explored_tasks(config: dict, bench: str) -> int | None:
    """How many training tasks pi_ref explores on this benchmark: its own `explore_tasks` where set (not
    null), else `exploration.tasks` (null = every task with expert data). It sets how many trajectory,
    step and group pairs DPO gets; docs/performance.md measures WebShop at 24 and 200."""
    own = (config.get(bench) or {}).get("explore_tasks")
    return own if own is not None else config["exploration"]["tasks"]


def reference_seed(config: dict, seed: int | str) -> int:
    """The SFT seed whose model is pi_ref for training seed `seed`. `reference_seed: each` makes every
    seed a replicate of the whole pipeline (its own SFT, exploration and pairs); a number shares one
    pi_ref among all seeds, as the paper trains every method from one SFT model."""
    chosen = config["reference_seed"]
    return int(seed) if chosen == "each" else int(chosen)


@dataclass(frozen=True)
class RolloutSettings:
    """Monte Carlo rollouts from expert states (IPR's step level, HPL's group level)."""

    tasks: int | None  # the explored training tasks (a seeded subset of those with expert data)
    mc_rollouts: int
    mc_temperature: float
    step_positions: int | None

    @classmethod
    def from_config(cls, config: dict, bench: str) -> RolloutSettings:
        ex = config["exploration"]
        return cls(
            explored_tasks(config, bench), ex["mc_rollouts"], ex["mc_temperature"], ex.get("step_positions")
        )


@dataclass(frozen=True)
class NegativeSettings:
    """How HPL's losing groups are sampled (the filter on their rewards is the curriculum's)."""

    tasks: int | None
    negatives: int
    tries: int

    @classmethod
    def from_config(cls, config: dict) -> NegativeSettings:
        groups = config["groups"]
        return cls(groups["tasks"], groups["negatives"], groups["tries"])


def runtime(config: dict, section: str) -> dict[str, Any]:
    """The run-time keys (`RUNTIME`) of one config section."""
    values = config.get(section) or {}
    return {key: values[key] for key in RUNTIME.get(section, ()) if key in values}
