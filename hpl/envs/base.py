"""The environment protocol shared by ALFWorld, WebShop and InterCode-SQL.

Every benchmark is a text environment an agent plays turn by turn:

    env = make_env("alfworld", data_dir=...)
    ids = env.task_ids("seen")                 # the task ids of a split
    obs, meta = env.reset(ids[0])              # first observation (holds the task), task metadata
    result = env.step("go to shelf 1")         # StepResult(observation, reward, done, info)
    snap = env.snapshot()                      # an opaque mid-episode state ...
    env.restore(snap)                          # ... restored cheaply where the engine allows

`step` takes the action text alone (what follows "Action:"; see `hpl.react.parse_action`). An action the
benchmark cannot execute is an invalid step: the observation says so (ALFWorld: "Nothing happens.") and
`info["invalid"]` is True; it never raises. `reward` is the outcome reward of the episode so far; all three
benchmarks give it at the end (`done`), which is the reward an episode is scored with.

Snapshots are for Monte Carlo rollouts, which restore thousands of mid-episode states. The default
implementation replays the action prefix after a reset (always correct, slow where a reset is slow);
engines override `snapshot`/`restore` with something cheaper and set `fast_restore = True`.
"""

from __future__ import annotations

import abc
import importlib
from dataclasses import dataclass, field
from typing import Any, ClassVar

from hpl import react


@dataclass
class StepResult:
    observation: str
    reward: float
    done: bool
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReplaySnapshot:
    """State as (task, actions so far): restored by reset + replay."""

    task_id: str
    actions: tuple[str, ...]


class BenchmarkError(RuntimeError):
    """A benchmark could not be set up or a task could not be loaded (message names the file/task)."""


class Environment(abc.ABC):
    """One benchmark engine playing one episode at a time."""

    #: registry name, e.g. "alfworld"
    name: ClassVar[str] = ""
    #: the benchmark's turn limit (ALFWorld 30, WebShop and InterCode-SQL 10)
    max_turns: ClassVar[int] = 30
    #: True when `restore` does not replay from a reset
    fast_restore: ClassVar[bool] = False
    #: what precedes each observation in the human turn (ETO/IPR: "Observation: ", WebShop "Observation:\n")
    observation_prefix: ClassVar[str] = react.OBSERVATION_PREFIX
    #: the human turn that answers a reply without an action, where the anchors print their own (else the
    #: prefixed observation of the empty action the runner sends)
    no_action_turn: ClassVar[str | None] = None
    #: what this environment's admissible actions constrain beyond the listed ones (e.g. WebShop's
    #: "instruction-word search"), named with the mode in table1's Actions column; "" for nothing more
    admissible_variant: str = ""

    def __init__(self) -> None:
        self._task_id: str | None = None
        self._actions: list[str] = []

    # --- what every benchmark implements -------------------------------------------------------
    @abc.abstractmethod
    def task_ids(self, split: str) -> list[str]:
        """Task ids of a split ("train", "seen", "unseen", "test", ...), in a fixed order."""

    @abc.abstractmethod
    def instruction(self) -> str:
        """The instruction prompt: the first human turn (action space and format rules)."""

    @abc.abstractmethod
    def _reset(self, task_id: str) -> tuple[str, dict[str, Any]]:
        """Start task `task_id`; return its first observation (with the task) and its metadata."""

    @abc.abstractmethod
    def _step(self, action: str) -> StepResult:
        """Execute one action text."""

    # --- the public protocol ------------------------------------------------------------------
    def reset(self, task_id: str) -> tuple[str, dict[str, Any]]:
        observation, meta = self._reset(task_id)
        self._task_id = task_id
        self._actions = []
        meta = {"task_id": task_id, **meta}
        return observation, meta

    def step(self, action: str) -> StepResult:
        if self._task_id is None:
            raise RuntimeError(f"{self.name}: step() called before reset()")
        result = self._step(action)
        self._actions.append(action)
        return result

    @property
    def task_id(self) -> str | None:
        return self._task_id

    @property
    def actions(self) -> list[str]:
        """Actions taken since the last reset (or restore)."""
        return list(self._actions)

    def snapshot(self) -> Any:
        """An opaque token for the current state, valid for `restore` on this same object."""
        if self._task_id is None:
            raise RuntimeError(f"{self.name}: snapshot() called before reset()")
        return ReplaySnapshot(self._task_id, tuple(self._actions))

    def restore(self, snapshot: Any) -> None:
        """Return to a state taken by `snapshot` (default: reset and replay the prefix)."""
        if not isinstance(snapshot, ReplaySnapshot):
            raise TypeError(f"{self.name}: not a snapshot of this environment: {type(snapshot).__name__}")
        self.reset(snapshot.task_id)
        for action in snapshot.actions:
            self.step(action)

    def admissible_actions(self) -> list[str] | None:
        """The valid actions in the current state, where the benchmark knows them (else None)."""
        return None

    def close(self) -> None:
        """Release engine resources (nothing to release by default)."""
        return None

    def __enter__(self) -> Environment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- making one ----------------------------------------------------------------------------------
def environment_class(name: str) -> type[Environment]:
    """The Environment class of benchmark `name` (hpl.benchmarks.BENCHMARKS, the one registry),
    imported on first use."""
    from hpl.benchmarks import BENCHMARKS

    if name not in BENCHMARKS:
        raise KeyError(f"unknown environment {name!r}; known: {', '.join(known_envs())}")
    module, cls = BENCHMARKS[name].environment.split(":")
    return getattr(importlib.import_module(module), cls)


def known_envs() -> list[str]:
    from hpl.benchmarks import BENCHMARKS

    return sorted(BENCHMARKS)


def make_env(name: str, **settings: Any) -> Environment:
    """Create the environment of benchmark `name` with benchmark-specific settings."""
    return environment_class(name)(**settings)
