"""ALFWorld (text engine) behind the `hpl.envs.base` protocol, as ETO/IPR play it.

    env = make_env("alfworld", data_dir=prepare_alfworld_data(dest, mirror))
    obs, meta = env.reset(env.task_ids("seen")[0])
    result = env.step("go to desk 1")

- Task ids: game folders relative to `json_2.1.1` ("valid_seen/<task folder>/<trial>"), solvable games
  only, sorted. Splits: "train" (3553), "seen" = valid_seen (140), "unseen" = valid_unseen (134),
  "valid_train" (200).
- Observations: the engine's text. The first one drops the "-= Welcome to TextWorld, ALFRED! =-" banner
  and joins the room description and the task with one newline, as ETO/IPR (after ReAct) do; later ones
  drop the "You arrive at desk 1. " that opens a "go to" answer, as their `process_ob` does.
- Actions: the engine's commands. The engine (alfworld 0.4.2) says "move X to Y" where ETO/IPR's data and
  prompt say "put X in/on Y" (older alfworld grammar); both are accepted ("put X in Y", "put X on Y" and
  "put X in/on Y" all map to "move X to Y"), and "toggle X [Y]" maps to "use X", so released ETO/IPR
  data plays unchanged. An action that matches no admissible command gets the engine's own answer,
  "Nothing happens.", with info["invalid"] = True.
- Reward 1.0 once the game is won; done when won or after `max_turns` steps.
- Speed: translation and game logic are memoized (`hpl.alfworld.engine`); resetting the game that is
  already loaded restores its initial state (0.2 ms); `snapshot`/`restore` use the Fast Downward state
  registry instead of replaying (`fast_restore = True`), falling back to reset + replay when the snapshot's
  game is no longer loaded.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import textworld
from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredInfos

from hpl.alfworld import engine
from hpl.alfworld.data import game_path, list_task_ids, split_of, task_type
from hpl.envs.base import BenchmarkError, Environment, ReplaySnapshot, StepResult

__all__ = [
    "AlfworldEnv",
    "AlfworldSnapshot",
    "INSTRUCTION",
    "task_type",
    "to_engine_command",
    "to_agent_command",
]

INSTRUCTION = """Interact with a household to solve a task. Imagine you are an intelligent agent in a household environment and your target is to perform actions to complete the task goal. At the beginning of your interactions, you will be given the detailed description of the current environment and your goal to accomplish.
For each of your turn, you will be given the observation of the last turn. You should first think about the current condition and plan for your future actions, and then output your action in this turn. Your output must strictly follow this format:"Thought: your thoughts.\\nAction: your next action".

The available actions are:
1. go to {recep}
2. take {obj} from {recep}
3. put {obj} in/on {recep}
4. open {recep}
5. close {recep}
6. toggle {obj} {recep}
7. clean {obj} with {recep}
8. heat {obj} with {recep}
9. cool {obj} with {recep}
10. use {obj}
11. look
12. inventory
13. examine {obj or recep}
where {obj} and {recep} correspond to objects and receptacles.
After your each turn, the environment will give you immediate feedback based on which you plan your next few steps. If the environment outputs "Nothing happens.", that means the previous action is invalid and you should try more options.

Your response should use the following format:

Thought: <your thoughts>
Action: <your next action>"""

BANNER = "-= Welcome to TextWorld, ALFRED! =-"
NOTHING_HAPPENS = "Nothing happens."

_PUT = re.compile(r"^put (?P<obj>.+?) (?:in/on|in|on|into|onto) (?P<recep>.+)$")
_MOVE = re.compile(r"^move (?P<obj>.+?) to (?P<recep>.+)$")
_ARRIVAL = re.compile(r"You arrive at [^.\n]+\. (?=\S)")
_TOGGLE = re.compile(r"^toggle (?P<obj>\S+ \d+)(?: .*)?$")


def to_engine_command(action: str, admissible: set[str] | frozenset[str] = frozenset()) -> str:
    """The engine command for an agent action: ETO's "put X in/on Y" -> "move X to Y", "toggle X" -> "use X".

    An alias is only taken when the original text is not itself admissible (the engine also has
    "put X into Y" for receptacle objects).
    """
    action = " ".join(action.strip().split())
    if action in admissible:
        return action
    match = _PUT.match(action)
    if match:
        command = f"move {match['obj']} to {match['recep']}"
        if not admissible or command in admissible:
            return command
    match = _TOGGLE.match(action)
    if match:
        command = f"use {match['obj']}"
        if not admissible or command in admissible:
            return command
    return action


def to_agent_command(command: str) -> str:
    """The ETO/IPR wording of an engine command ("move X to Y" -> "put X in/on Y"); others unchanged."""
    match = _MOVE.match(command)
    return f"put {match['obj']} in/on {match['recep']}" if match else command


def first_observation(feedback: str) -> str:
    """The intro text without the banner, room and task joined by one newline (ETO/IPR's reset)."""
    return "\n".join(part for part in feedback.split("\n\n") if part.strip() and part.strip() != BANNER)


def step_observation(feedback: str) -> str:
    """The engine's answer as ETO/IPR show it: without the "You arrive at ... . " that opens a "go to" answer.

    Their `process_ob` cuts "You arrive at loc N. " (the older engine's wording) up to the first ". ", so their
    agents (and released data) see "On the desk 1, you see ..."; alfworld 0.4.2 says "You arrive at desk 1. ".
    """
    match = _ARRIVAL.match(feedback)
    return feedback[match.end() :] if match else feedback


@dataclass(frozen=True)
class AlfworldSnapshot(ReplaySnapshot):
    """A replay snapshot that also carries the engine state for a restore without replay."""

    engine_state: engine.EngineSnapshot | None = None
    turns: int = 0


class AlfworldEnv(Environment):
    """One ALFWorld game at a time on the textworld PDDL engine.

    Args:
        data_dir: the prepared data folder (holds json_2.1.1/; see `prepare_alfworld_data`).
        max_turns: an episode's turn limit (ALFWorld: 30).
        cache_dir: folder for the on-disk translation cache, shareable by processes (None: memory only).
        fast_commands: memoize each command's text per operator (a step in ~4 ms instead of ~50-100 ms).
        translation_capacity: games whose translation stays in memory (~7.6 MB each).
    """

    name = "alfworld"

    max_turns = 30
    fast_restore = True
    # ETO/IPR's AlfWorldEnv answer to a reply without "Action:" (the engine would say "Nothing happens.")
    no_action_turn = "Observation: Error Input. Your input must contains 'Action: '"

    def __init__(
        self,
        data_dir: str | os.PathLike,
        max_turns: int = 30,
        cache_dir: str | os.PathLike | None = None,
        fast_commands: bool = True,
        translation_capacity: int = 16,
    ) -> None:
        super().__init__()
        self.data_dir = Path(data_dir)
        if not (self.data_dir / "json_2.1.1").is_dir():
            raise BenchmarkError(
                f"no ALFWorld data at {self.data_dir} (expected {self.data_dir / 'json_2.1.1'}); "
                "prepare it with hpl.alfworld.data.prepare_alfworld_data"
            )
        for warning in engine.check_versions():
            warnings.warn(warning, stacklevel=2)
        self.max_turns = max_turns
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.translations = engine.TranslationCache(self.cache_dir, capacity=translation_capacity)
        infos = textworld.EnvInfos(
            won=True, admissible_commands=True, facts=True, extras=["gamefile", "walkthrough"]
        )
        self._pddl = engine.CachedPddlEnv(infos, translations=self.translations, fast_commands=fast_commands)
        # ALFWorld's own wrappers: object names like "mug 1" (no shuffling, as in evaluation) and the game path
        self._game = AlfredInfos(AlfredDemangler(self._pddl, shuffle=False))
        self._loaded: str | None = None  # task id whose game is loaded in the engine
        self._initial: engine.EngineSnapshot | None = None
        self._state: Any = None
        self._turns = 0
        self._task_ids: dict[str, list[str]] = {}

    # --- tasks ------------------------------------------------------------------------------------
    def task_ids(self, split: str) -> list[str]:
        if split not in self._task_ids:
            self._task_ids[split] = list_task_ids(self.data_dir, split)
        return list(self._task_ids[split])

    def instruction(self) -> str:
        return INSTRUCTION

    def game_file(self, task_id: str) -> Path:
        return game_path(self.data_dir, task_id)

    # --- episode ----------------------------------------------------------------------------------
    def _reset(self, task_id: str) -> tuple[str, dict[str, Any]]:
        if (
            task_id == self._loaded
            and self._initial is not None
            and engine.can_restore(self._pddl, self._initial)
        ):
            engine.restore(self._pddl, self._initial)  # same game: back to its initial state, no rebuild
            state = self._pddl.state
        else:
            state = self._load(task_id)
        self._state = state
        self._turns = 0
        meta = {
            "task_type": task_type(task_id),
            "split": split_of(task_id),
            "game_file": str(self.game_file(task_id)),
        }
        return first_observation(state["feedback"]), meta

    def _load(self, task_id: str) -> Any:
        self._loaded, self._initial = None, None
        path = self.game_file(task_id)
        self._game.load(str(path))  # BenchmarkError naming the file when missing or corrupt
        state = self._game.reset()
        self._loaded = task_id
        self._initial = engine.capture(self._pddl)
        return state

    def _step(self, action: str) -> StepResult:
        if self._state is None:
            raise RuntimeError("alfworld: step() called before reset()")
        valid = self._state["_valid_commands"]
        command = to_engine_command(action or "", frozenset(valid))
        invalid = command not in valid
        state, _, _ = self._game.step(command)  # the engine answers "Nothing happens." to an invalid one
        self._state = state
        self._turns += 1
        won = bool(state["won"])
        info = {
            "won": won,
            "invalid": invalid,
            "command": command,
            "admissible_actions": list(state["admissible_commands"]),
            "turn": self._turns,
        }
        done = won or self._turns >= self.max_turns
        return StepResult(step_observation(state["feedback"]), 1.0 if won else 0.0, done, info)

    def admissible_actions(self) -> list[str] | None:
        """The admissible commands in the agent's wording (`to_agent_command`, what the expert data says)."""
        return (
            None if self._state is None else [to_agent_command(c) for c in self._state["admissible_commands"]]
        )

    @property
    def won(self) -> bool:
        return bool(self._state is not None and self._state["won"])

    @property
    def walkthrough(self) -> list[str]:
        """The game's PDDL walkthrough (engine commands) for the loaded game."""
        return list(self._state["extra.walkthrough"]) if self._state is not None else []

    @property
    def raw_state(self) -> Any:
        """The engine's current textworld GameState (facts, admissible commands, ...), read only."""
        return self._state

    # --- snapshots ----------------------------------------------------------------------------------
    def snapshot(self) -> AlfworldSnapshot:
        if self._task_id is None:
            raise RuntimeError("alfworld: snapshot() called before reset()")
        return AlfworldSnapshot(self._task_id, tuple(self._actions), engine.capture(self._pddl), self._turns)

    def restore(self, snapshot: Any) -> None:
        engine_state = getattr(snapshot, "engine_state", None)
        if (
            isinstance(snapshot, AlfworldSnapshot)
            and engine_state is not None
            and snapshot.task_id == self._loaded
            and engine.can_restore(self._pddl, engine_state)
        ):
            engine.restore(self._pddl, engine_state)
            self._state = self._pddl.state
            self._turns = snapshot.turns
            self._task_id = snapshot.task_id
            self._actions = list(snapshot.actions)
            return
        super().restore(snapshot)  # another game was loaded since: reset + replay (always correct)

    def close(self) -> None:
        self._state = None
        self._initial = None
        self._loaded = None
