"""Playing episodes: many live environments, one batched policy call per turn.

`play` keeps up to `parallel` episodes alive, asks the policy for the next reply of all of them at once,
steps each environment with the parsed action, and hands every finished episode to `on_finish` (so the
caller can write it to a resumable log at once). A reply with no parsable action is an invalid step: the
environment gets an empty action (each benchmark answers that with its own "invalid" observation, or the
human turn is the environment's `no_action_turn`, the anchors' own message), the step is counted, and the
episode goes on. An episode ends when the environment says done or after the
benchmark's turn limit; at the limit, an environment that scores unsubmitted work (`final_reward`) is
asked for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from hpl import react
from hpl.envs.base import Environment
from hpl.policy import Policy, wants_admissible
from hpl.trajectory import new_conversation


@dataclass
class Episode:
    task_id: str
    meta: dict[str, Any]
    conversations: list[dict[str, str]]
    run_id: str = ""  # distinguishes several samples of one task ("" = the task id)
    actions: list[str | None] = field(default_factory=list)
    invalid_actions: int = 0
    reward: float = 0.0
    done: bool = False

    @property
    def turns(self) -> int:
        return len(self.actions)

    def record(self) -> dict[str, Any]:
        conversations = list(self.conversations)
        if conversations[-1]["from"] == "human" and len(conversations) > 3:
            conversations.pop()  # the observation after the last action trains nothing
        return {
            "id": self.run_id or self.task_id,
            "task_id": self.task_id,
            "task_type": self.meta.get("task_type"),
            "split": self.meta.get("split"),
            "reward": self.reward,
            "success": self.reward >= 1.0,
            "turns": self.turns,
            "invalid_actions": self.invalid_actions,
            "actions": self.actions,
            "conversations": conversations,
        }


def start_episode(env: Environment, task_id: str, run_id: str = "") -> Episode:
    observation, meta = env.reset(task_id)
    return Episode(task_id, meta, new_conversation(env.instruction(), observation), run_id=run_id)


def advance(env: Environment, episode: Episode, reply: str, max_turns: int) -> None:
    """Apply one agent reply to `episode` (step, record, decide whether it ended)."""
    action = react.parse_action(reply)
    result = env.step(action or "")
    invalid = action is None or bool(result.info.get("invalid"))
    episode.actions.append(action)
    episode.invalid_actions += int(invalid)
    episode.conversations.append({"from": "gpt", "value": reply})
    human = react.format_observation(result.observation, env.observation_prefix)
    if action is None and env.no_action_turn is not None:
        human = env.no_action_turn  # the anchors' own message; the empty action above still counts the turn
    episode.conversations.append({"from": "human", "value": human})
    episode.reward = float(result.reward)
    if result.done:
        episode.done = True
    elif episode.turns >= max_turns:
        episode.done = True
        final = getattr(env, "final_reward", None)
        if callable(final):
            episode.reward = float(final())


def play(
    make_env: Callable[[], Environment],
    policy: Policy,
    task_ids: Iterable[str | tuple[str, str]],
    *,
    parallel: int = 8,
    temperature: float = 0.0,
    max_turns: int | None = None,
    on_finish: Callable[[Episode], None] | None = None,
    progress: str | None = None,
) -> list[Episode]:
    """Play every task once; return the finished episodes in completion order.

    An item of `task_ids` may be a (run_id, task_id) pair to play one task several times.
    """
    pending = [t if isinstance(t, tuple) else (t, t) for t in task_ids]
    envs: list[Environment] = []
    live: list[tuple[Environment, Episode]] = []
    finished: list[Episode] = []
    bar = tqdm(total=len(pending), desc=progress, disable=progress is None, unit="episode")
    try:
        while pending or live:
            while pending and len(live) < parallel:
                env = envs.pop() if envs else make_env()
                run_id, task_id = pending.pop(0)
                live.append((env, start_episode(env, task_id, run_id)))
            episodes = [episode for _, episode in live]
            replies = policy.act(
                [episode.conversations for episode in episodes],
                temperature=temperature,
                keys=turn_keys(episodes),
                **admissible_kwargs(policy, [env for env, _ in live]),
            )
            still: list[tuple[Environment, Episode]] = []
            for (env, episode), reply in zip(live, replies):
                advance(env, episode, reply, max_turns or env.max_turns)
                if episode.done:
                    finished.append(episode)
                    envs.append(env)
                    bar.update(1)
                    if on_finish:
                        on_finish(episode)
                else:
                    still.append((env, episode))
            live = still
    finally:
        bar.close()
        for env in envs + [env for env, _ in live]:
            env.close()
    return finished


def admissible_kwargs(policy: Policy, envs: Sequence[Environment]) -> dict[str, Any]:
    """`admissible=` for a policy that constrains its actions (each env's current list), else nothing."""
    return {"admissible": [env.admissible_actions() for env in envs]} if wants_admissible(policy) else {}


def turn_keys(episodes: Sequence[Episode]) -> list[str]:
    """The name of each episode's next turn: its run id and turn number (a policy's sampling stream)."""
    return [f"{episode.run_id or episode.task_id}/{episode.turns}" for episode in episodes]


def select_tasks(task_ids: Sequence[str], n: int | None, seed: int = 0) -> list[str]:
    """A fixed, seeded subset of `n` tasks (all when n is None), in the original order.

    A seeded sample rather than the first n: ids sort by task type, and a prefix would hold one type.
    """
    import random

    if n is None or n >= len(task_ids):
        return list(task_ids)
    chosen = set(random.Random(seed).sample(range(len(task_ids)), n))
    return [tid for i, tid in enumerate(task_ids) if i in chosen]
