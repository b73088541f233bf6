"""Offline ALFWorld expert trajectories from the engine itself (no LLM teacher needed).

Two sources, selected by name:
- "handcoded" (default): ALFWorld's `HandCodedTWAgent`, the heuristic expert that `AlfredTWEnv` runs in
  training mode. It searches receptacles the way an agent without hidden information must (by priors of
  where an object class is found, opening closed ones), so a cloned policy can learn what it does.
- "walkthrough": the game's PDDL walkthrough (the planner's plan). Shorter, but it goes straight to where
  objects are hidden: information the agent does not have.

Each episode becomes a trajectory in the conversation schema (`hpl.trajectory.build_trajectory`), kept
only when it is won (reward 1.0) within the environment's turn limit. Agent replies are ReAct turns with
templated thoughts (`Thinker`): a plan sentence from the task type on the first turn, then one sentence
per action from its verb, the task's objects and what the agent has done so far (holding, heated, ...),
never from hidden state. Actions are written in ETO/IPR's wording ("put X in/on Y"), which the
environment maps to the engine's "move X to Y".
"""

from __future__ import annotations

import itertools
import json
import random
import re
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpl import react
from hpl.alfworld.data import task_type
from hpl.trajectory import build_trajectory

SOURCES = ("handcoded", "walkthrough")
DEFAULT_SOURCE = "handcoded"
#: the processing verb and appliance of each task type
_PROCESS = {"Clean": ("clean", "sinkbasin"), "Heat": ("heat", "microwave"), "Cool": ("cool", "fridge")}


# --- episodes ---------------------------------------------------------------------------------------
@dataclass
class Episode:
    """One expert episode: agent-form actions with the engine's answers."""

    task_id: str
    first_observation: str
    meta: dict[str, Any]
    actions: list[str] = field(default_factory=list)
    observations: list[str] = field(default_factory=list)
    won: bool = False
    error: str | None = None


def _play(env: Any, task_id: str, next_action: Callable[[Any, str | None], str | None]) -> Episode:
    """Step `env` with `next_action(raw_state, last_action)` until won, turn limit or no action."""
    first, meta = env.reset(task_id)
    episode = Episode(task_id, first, meta)
    last = None
    while True:
        action = next_action(env.raw_state, last)
        if action is None:
            break
        result = env.step(action)
        episode.actions.append(action)
        episode.observations.append(result.observation)
        last = action
        if result.done:
            episode.won = bool(result.info["won"])
            break
    return episode


def play_walkthrough(env: Any, task_id: str) -> Episode:
    """Play the game's PDDL walkthrough."""
    from hpl.alfworld.env import to_agent_command

    env.reset(task_id)
    plan = iter([to_agent_command(c) for c in env.walkthrough])
    return _play(env, task_id, lambda state, last: next(plan, None))


@contextmanager
def _seeded_global_random(seed: int) -> Iterator[None]:
    """The handcoded expert draws from the global `random`: seed it per game, then put it back."""
    saved = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(saved)


def play_handcoded(env: Any, task_id: str, max_steps: int = 200) -> Episode:
    """Play ALFWorld's handcoded expert, driven as `AlfredExpert` drives it, without its opening "look".

    Differences from `AlfredExpert` (both keep the expert's decisions): the expert sees the intro once and
    acts on it directly (AlfredExpert spends a first step on "look"); and it is told the executed action in
    the wording it was written for ("put X in/on Y": alfworld 0.4.2's expert tracks its inventory by the
    word "put", which the 0.4.2 engine's "move X to Y" lacks, so without this it loses track after a put).
    A proposal that is not admissible becomes "look", as in AlfredExpert.
    """
    from alfworld.agents.expert import HandCodedAgentFailed, HandCodedAgentTimeout, HandCodedTWAgent

    from hpl.alfworld.env import to_agent_command

    agent = HandCodedTWAgent(max_steps=max_steps)
    game_file = env.game_file(task_id)
    agent.reset(str(game_file))

    def next_action(state: Any, last: str | None) -> str | None:
        if last is None:
            agent.observe(state["feedback"])  # the intro: the expert reads the receptacles from it
            last = "look"
        proposal = agent.act(state, 0, state["won"], last)
        if proposal not in state["admissible_commands"]:
            proposal = "look"
        return to_agent_command(proposal)

    with _seeded_global_random(zlib.crc32(task_id.encode())):
        try:
            return _play(env, task_id, next_action)
        except (HandCodedAgentFailed, HandCodedAgentTimeout) as err:
            episode = Episode(task_id, "", {"task_type": task_type(task_id)})
            episode.error = f"handcoded expert gave up: {type(err).__name__}"
            return episode


def play(env: Any, task_id: str, source: str = DEFAULT_SOURCE) -> Episode:
    if source == "handcoded":
        return play_handcoded(env, task_id)
    if source == "walkthrough":
        return play_walkthrough(env, task_id)
    raise ValueError(f"unknown ALFWorld expert source {source!r}; known: {', '.join(SOURCES)}")


# --- templated thoughts -------------------------------------------------------------------------------
def task_params(game_file: str | Path) -> dict[str, str]:
    """The task's object classes (lower case) from the game's traj_data.json."""
    data = json.loads((Path(game_file).parent / "traj_data.json").read_text())
    params = data.get("pddl_params", {})
    return {
        key: str(params.get(key) or "").lower() for key in ("object_target", "parent_target", "toggle_target")
    }


def _cls(name: str) -> str:
    """Object class of an object name: "alarmclock 2" -> "alarmclock"."""
    return name.split(" ")[0]


class Thinker:
    """Writes one thought per expert action from the task and what the agent has done so far."""

    def __init__(self, kind: str, params: dict[str, str]) -> None:
        self.kind = kind
        self.obj = params.get("object_target", "") or "object"
        self.parent = params.get("parent_target", "")
        self.lamp = params.get("toggle_target", "") or "desklamp"
        self.holding: str | None = None
        self.processed = False
        self.placed = 0
        self.first = True

    def plan(self) -> str:
        o, p = self.obj, self.parent
        if self.kind == "Examine":
            return f"To solve the task, I need to find and take a {o}, then find and use a {self.lamp}."
        if self.kind == "Pick2":
            return (
                f"To solve the task, I need to find and take the first {o}, then put it in/on {p}, "
                f"then find and take the second {o}, then put it in/on {p}."
            )
        if self.kind in _PROCESS:
            verb, tool = _PROCESS[self.kind]
            return f"To solve the task, I need to find and take a {o}, then {verb} it with {tool}, then put it in/on {p}."
        return f"To solve the task, I need to find and take a {o}, then put it in/on {p}."

    def think(self, action: str) -> str:
        thought = self._step_thought(action)
        if self.first:
            thought = f"{self.plan()} {thought}"
            self.first = False
        return thought

    def observe(self, action: str, observation: str) -> None:
        """Update what the agent knows after the engine answered `action`."""
        if observation.strip() == "Nothing happens.":
            return
        words = action.split()
        if words[:1] == ["take"] and " from " in action:
            self.holding = action[len("take ") :].split(" from ")[0]
            self.processed = False
        elif words[:1] == ["put"]:
            if self.holding and _cls(self.holding) == self.obj:
                self.placed += 1
            self.holding = None
        elif words[:1] and words[0] in ("heat", "cool", "clean"):
            self.processed = True

    def _needs_processing(self) -> bool:
        return self.kind in _PROCESS and not self.processed

    def _step_thought(self, action: str) -> str:
        words = action.split()
        verb = words[0] if words else ""
        if verb == "go" and action.startswith("go to "):
            return self._goto_thought(action[len("go to ") :])
        if verb == "open":
            return f"The {action[5:]} is closed. I open it to see what is inside."
        if verb == "close":
            return f"I do not need anything in the {action[6:]}. I close it."
        if verb == "take":
            item, _, recep = action[5:].partition(" from ")
            if _cls(item) == self.obj:
                return f"There is a {item} in/on the {recep}. I take it."
            return f"I take the {item} from the {recep}."
        if verb == "put":
            item, _, recep = re.sub(r"^put ", "", action).partition(" in/on ")
            return f"Now I put the {item} in/on the {recep}."
        if verb in ("heat", "cool", "clean"):
            item, _, tool = action[len(verb) + 1 :].partition(" with ")
            return f"I {verb} the {item} with the {tool}."
        if verb == "use":
            return f"I am holding the {self.holding or self.obj}. I turn on the {action[4:]} to look at it under the light."
        if verb == "examine":
            return f"Let me take a closer look at the {action[8:]}."
        if verb == "inventory":
            return "Let me check what I am carrying."
        if verb == "look":
            return "Let me look around to see where I am."
        return f"I will {action}."

    def _goto_thought(self, place: str) -> str:
        o = self.obj
        if self.holding and _cls(self.holding) != o:
            return f"I am holding a {self.holding}, which I do not need. I go to the {place} to put it back."
        if not self.holding:
            which = "the second " if self.kind == "Pick2" and self.placed >= 1 else "a "
            return f"I need to find {which}{o}. A {o} may be at the {place}; I go there to check."
        if self._needs_processing():
            verb, tool = _PROCESS[self.kind]
            return f"Now I have the {self.holding}. Next, I need to {verb} it with a {tool}; I go to the {place}."
        if self.kind == "Examine":
            return f"Now I have the {self.holding}. Next, I need to find a {self.lamp}; I go to the {place}."
        state = {"Heat": "heated ", "Cool": "cooled ", "Clean": "cleaned "}.get(self.kind, "")
        return f"Now I have the {state}{self.holding}. Next, I need to put it in/on {self.parent}; I go to the {place}."


# --- trajectories -------------------------------------------------------------------------------------
def to_trajectory(env: Any, episode: Episode, source: str) -> dict[str, Any]:
    """The episode as a conversation-schema trajectory with templated ReAct replies."""
    kind = task_type(episode.task_id)
    thinker = Thinker(kind, task_params(env.game_file(episode.task_id)))
    steps = []
    for action, observation in zip(episode.actions, episode.observations, strict=True):
        steps.append((react.format_turn(thinker.think(action), action), observation))
        thinker.observe(action, observation)
    return build_trajectory(
        episode.task_id,
        env.instruction(),
        episode.first_observation,
        steps,
        1.0 if episode.won else 0.0,
        observation_prefix=env.observation_prefix,
        task_type=kind,
        split=episode.meta.get("split"),
        source=source,
        n_actions=len(episode.actions),
    )


def iter_expert(
    env: Any, task_ids: Iterable[str], source: str = DEFAULT_SOURCE
) -> Iterator[tuple[str, dict | None, Episode]]:
    """Play the expert on each task: yields (task_id, trajectory or None when not won, episode)."""
    for task_id in task_ids:
        episode = play(env, task_id, source)
        record = to_trajectory(env, episode, source) if episode.won else None
        yield task_id, record, episode


def _failure(episode: Episode, max_turns: int) -> str:
    return episode.error or ("turn limit" if len(episode.actions) >= max_turns else "not won")


_WORKER_ENV: Any = None  # one engine per worker process (_start_worker)


def _start_worker(env_kwargs: dict) -> None:
    from hpl.alfworld.env import AlfworldEnv

    global _WORKER_ENV
    _WORKER_ENV = AlfworldEnv(**env_kwargs)


def _worker_game(task_id: str, source: str, max_turns: int) -> tuple[str, dict | None, str]:
    (_, record, episode), *_ = iter_expert(_WORKER_ENV, [task_id], source)
    return task_id, record, _failure(episode, max_turns)


def _results(
    todo: list[str], source: str, env_kwargs: dict, workers: int
) -> Iterator[tuple[str, dict | None, str]]:
    """(task_id, trajectory or None, failure) per game as games finish: in this process, or spread over
    `workers` processes with an engine each (a game's play does not depend on where it runs: the
    handcoded expert's random is seeded per game)."""
    from hpl.alfworld.env import AlfworldEnv

    if workers <= 1 or len(todo) <= 1:
        env = AlfworldEnv(**env_kwargs)
        try:
            for task_id, record, episode in iter_expert(env, todo, source):
                yield task_id, record, _failure(episode, env_kwargs["max_turns"])
        finally:
            env.close()
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # fork, not spawn: spawn would run the calling script (a Snakemake job's __main__) again in each worker.
    # The pool forks its workers at the first submit, before the caller's progress bar starts a thread.
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_start_worker, initargs=(env_kwargs,)
    ) as pool:
        futures = [pool.submit(_worker_game, t, source, env_kwargs["max_turns"]) for t in todo]
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            for future in futures:
                future.cancel()


def collect_expert(
    data_dir: str | Path,
    task_ids: Iterable[str],
    source: str = DEFAULT_SOURCE,
    progress: bool = True,
    on_record: Callable[[dict], None] | None = None,
    skip: Callable[[str], bool] | None = None,
    max_turns: int = 30,
    cache_dir: str | Path | None = None,
    workers: int = 1,
) -> tuple[list[dict], dict[str, Any]]:
    """Expert trajectories of `task_ids` and their data card.

    Resumable: `on_record(record)` is called as each kept trajectory is made (e.g. `ResumableJsonl.add`),
    and tasks for which `skip(task_id)` is true (e.g. `ResumableJsonl.done`) are not played again.
    `workers` > 1 plays games in that many processes; records then arrive in the order games finish
    (`ResumableJsonl.finish(order=...)` restores the task order) and are the same records.
    Returns (kept records made in this call, in task order, and the card); the card counts attempted/kept
    per task type.
    """
    from tqdm import tqdm

    if source not in SOURCES:
        raise ValueError(f"unknown ALFWorld expert source {source!r}; known: {', '.join(SOURCES)}")
    task_ids = list(task_ids)
    todo = [t for t in task_ids if not (skip and skip(t))]
    env_kwargs = {"data_dir": str(data_dir), "max_turns": max_turns, "cache_dir": cache_dir}
    records, attempted, kept, lengths, failures = {}, Counter(), Counter(), [], Counter()
    results = _results(todo, source, env_kwargs, workers)
    first = next(results, None)  # starts the engine or the worker processes, before the bar's thread
    bar = tqdm(total=len(todo), desc=f"alfworld expert ({source})", unit="game", disable=not progress)
    try:
        for task_id, record, failure in itertools.chain([first] if first else [], results):
            kind = task_type(task_id)
            attempted[kind] += 1
            if record is not None:
                kept[kind] += 1
                lengths.append(record["n_actions"])
                records[task_id] = record
                if on_record is not None:
                    on_record(record)
            else:
                failures[failure] += 1
            bar.update(1)
            bar.set_postfix(kept=sum(kept.values()))
    finally:
        bar.close()
    records = [records[t] for t in todo if t in records]
    card = {
        "benchmark": "alfworld",
        "source": source,
        "max_turns": max_turns,
        "tasks": len(task_ids),
        "skipped_done": len(task_ids) - len(todo),
        "attempted": sum(attempted.values()),
        "kept": sum(kept.values()),
        "per_type": {k: {"attempted": attempted[k], "kept": kept[k]} for k in sorted(attempted)},
        "mean_actions": round(sum(lengths) / len(lengths), 2) if lengths else None,
        "failures": dict(sorted(failures.items())),
        "thoughts": "templated (hpl.alfworld.expert.Thinker)",
    }
    return records, card
