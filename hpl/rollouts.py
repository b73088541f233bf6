"""Monte Carlo rollouts: complete episodes from mid-episode states with pi_ref, many at once.

A `State` is a task plus the actions that lead to it (and the conversation so far, which is the policy's
context). `rollout_states` completes each state `n` times at a given temperature and returns every
rollout's final reward and continuation; `mc_value` is the mean final reward, the Monte Carlo estimate of
the state's value used by IPR (step level) and HPL (group level).

How it stays fast (the step/group data are the expensive part of the method):
- one policy call per turn for all live rollouts (batched generation across `lanes` environments);
- a state is reached once per lane (reset + replay of its prefix), snapshotted, and every further rollout
  of it restores the snapshot, which is a C-level state-id switch on ALFWorld (`fast_restore`) instead of
  a reset costing seconds. Engines without a cheap restore fall back to reset + replay (still correct).
`naive=True` runs the reference path instead: one rollout at a time, each from a fresh reset + replay, as
IPR's released scripts do; the benchmark script compares the two.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from hpl.envs.base import Environment, StepResult
from hpl.episodes import Episode, admissible_kwargs, advance, turn_keys
from hpl.io import ResumableJsonl
from hpl.policy import Policy


@dataclass(frozen=True)
class State:
    key: str  # unique name, e.g. "task#step3"
    task_id: str
    prefix: tuple[str, ...]  # actions from the reset to this state
    conversations: tuple[dict, ...]  # the conversation up to here, ending with a human turn
    limit: int | None = None  # turn limit for rollouts from here (default: the rollout's max_turns)


@dataclass
class Rollout:
    reward: float
    turns: list[dict]  # the continuation: gpt/human turns after the state, ending with a gpt turn
    actions: list[str | None]
    observation_after: dict | None = None  # the human turn that answered the last action


@dataclass
class StateResult:
    state: State
    rollouts: list[Rollout] = field(default_factory=list)
    started: int = 0  # rollouts begun, numbering each one

    @property
    def value(self) -> float:
        return mc_value(self.rollouts)


def mc_value(rollouts: Sequence[Rollout]) -> float:
    """Mean final reward of the rollouts (the Monte Carlo value estimate)."""
    return statistics.fmean(r.reward for r in rollouts) if rollouts else 0.0


def reach(env: Environment, state: State) -> StepResult | None:
    """Put `env` in `state` by reset + replay (works on every engine); return the last step's result."""
    env.reset(state.task_id)
    result = None
    for action in state.prefix:
        result = env.step(action)
    return result


@dataclass
class _Lane:
    """One environment playing one rollout at a time; it remembers the state it last reached."""

    env: Environment
    result: StateResult | None = None  # the state whose rollout is in play
    reached: str | None = None  # key of the state `snapshot` holds
    snapshot: Any = None
    arrival: StepResult | None = None  # the step that reached that state (None: the state is a reset)
    episode: Episode | None = None


def _start_rollout(lane: _Lane, result: StateResult, naive: bool) -> None:
    state = result.state
    if naive or lane.reached != state.key:
        lane.arrival = reach(lane.env, state)
        lane.reached, lane.snapshot = (None, None) if naive else (state.key, lane.env.snapshot())
    else:
        lane.env.restore(lane.snapshot)
    lane.result = result
    # the run id names this rollout (state key and rollout number) for the policy's sampling stream
    run_id = f"{state.key}#{result.started}"
    result.started += 1
    lane.episode = Episode(state.task_id, {}, [dict(t) for t in state.conversations], run_id=run_id)


def _finish_rollout(lane: _Lane) -> StateResult:
    episode, result = lane.episode, lane.result
    turns = episode.conversations[len(result.state.conversations) :]
    after = None
    if turns and turns[-1]["from"] == "human":
        turns, after = turns[:-1], turns[-1]
    result.rollouts.append(Rollout(episode.reward, turns, list(episode.actions), after))
    lane.episode = lane.result = None
    return result


def rollout_states(
    make_env: Callable[[], Environment],
    policy: Policy,
    states: Iterable[State],
    n: int,
    *,
    temperature: float = 1.0,
    max_turns: int | None = None,
    lanes: int = 8,
    naive: bool = False,
    on_state_done: Callable[[StateResult], None] | None = None,
    progress: str | None = None,
) -> list[StateResult]:
    """Complete every state `n` times; return one StateResult per state (in completion order).

    Work items are (state, rollout) pairs in state order, handed to whichever lane is free, so the `n`
    rollouts of a state run side by side on several lanes, each of which reaches the state once and then
    restores its snapshot. A state whose prefix already ended the episode gets its terminal reward as each
    rollout, with an empty continuation.
    """
    results = [StateResult(state) for state in states]
    work = [result for result in results for _ in range(n)]
    pool = [_Lane(make_env()) for _ in range(1 if naive else max(1, min(lanes, len(work))))]
    finished: list[StateResult] = []
    bar = tqdm(total=len(work), desc=progress, disable=progress is None, unit="rollout")

    def done(result: StateResult) -> None:
        bar.update(1)
        if len(result.rollouts) == n:
            finished.append(result)
            if on_state_done:
                on_state_done(result)

    try:
        while work or any(lane.episode for lane in pool):
            for lane in pool:
                while lane.episode is None and work:
                    _start_rollout(lane, work.pop(0), naive)
                    if _already_over(lane, max_turns):
                        done(_finish_rollout(lane))
            active = [lane for lane in pool if lane.episode is not None]
            if not active:
                continue
            episodes = [lane.episode for lane in active]
            replies = policy.act(
                [episode.conversations for episode in episodes],
                temperature=temperature,
                keys=turn_keys(episodes),
                **admissible_kwargs(policy, [lane.env for lane in active]),
            )
            for lane, reply in zip(active, replies):
                state = lane.result.state
                limit = (state.limit or max_turns or lane.env.max_turns) - len(state.prefix)
                advance(lane.env, lane.episode, reply, limit)
                if lane.episode.done:
                    done(_finish_rollout(lane))
    finally:
        bar.close()
        for lane in pool:
            lane.env.close()
    return finished


def _already_over(lane: _Lane, max_turns: int | None) -> bool:
    """True when the state is terminal or at the turn limit: the rollout is just the state's reward."""
    env, state, arrival = lane.env, lane.result.state, lane.arrival
    if arrival is not None and arrival.done:
        lane.episode.reward = float(arrival.reward)
        return True
    if len(state.prefix) >= (state.limit or max_turns or env.max_turns):
        final = getattr(env, "final_reward", None)
        lane.episode.reward = float(final()) if callable(final) else float(arrival.reward if arrival else 0.0)
        return True
    return False


def state_record(result: StateResult) -> dict:
    """A StateResult as a JSON record: every rollout's reward, the MC value, the first continuation."""
    first = result.rollouts[0] if result.rollouts else None
    return {
        "id": result.state.key,
        "task_id": result.state.task_id,
        "prefix_len": len(result.state.prefix),
        "rewards": [r.reward for r in result.rollouts],
        "value": result.value,
        "turns": first.turns if first else [],
        "actions": first.actions if first else [],
    }


def run_states(
    make_env: Callable[[], Environment],
    policy: Policy,
    states: list[State],
    n: int,
    log: ResumableJsonl,
    temperature: float,
    lanes: int,
    progress: str | None,
) -> dict[str, dict]:
    """Roll out the states not yet in `log` (n times each), then finish `log`; return records by key.

    The resumable form of `rollout_states` that the step- and group-level jobs use: each finished state is
    appended to `log` at once, so a killed job keeps them."""
    todo = [s for s in states if not log.done(s.key)]
    rollout_states(
        make_env,
        policy,
        todo,
        n,
        temperature=temperature,
        lanes=lanes,
        on_state_done=lambda result: log.add(state_record(result)),
        progress=progress,
    )
    return {r["id"]: r for r in log.finish(order=[s.key for s in states])}
