"""Step-level exploration data for IPR (REFERENCE.md section 4).

For step j of an expert trajectory (state s_j = after the expert's first j actions):
1. pi_ref samples an alternative action at s_j and completes the episode: the rejected continuation and
   its final reward (`agent_turns`, `agent_reward`);
2. the agent's step value: the MC mean over M rollouts from the state after its action at j;
3. the expert's step value: the MC mean over M rollouts from s_{j+1} (after the expert's action at j).
`step_records` joins them into the records `hpl.pairs.step_pairs` filters.

Phase 1 (1.) must finish before phase 2 (2. and 3., batched together) since 2. starts where 1. acted.
Each phase appends finished states to a resumable log, so a killed job redoes only states in flight.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from hpl.envs.base import Environment
from hpl.io import ResumableJsonl
from hpl.pairs import prefix_turns
from hpl.policy import Policy
from hpl.rollouts import State, run_states
from hpl.trajectory import actions_of


def expert_state(record: dict, j: int) -> State:
    """s_j of an expert trajectory: its first j actions and the conversation up to their observations."""
    actions = [a or "" for a in actions_of(record["conversations"])]
    return State(
        f"{record['id']}#s{j}",
        record["id"],
        tuple(actions[:j]),
        tuple(prefix_turns(record["conversations"], j)),
    )


def chosen_steps(n_actions: int, limit: int | None, rng: random.Random) -> list[int]:
    """Which steps of a trajectory get step-level data: all, or a seeded sample of `limit` of them."""
    steps = list(range(n_actions))
    if limit is not None and limit < n_actions:
        steps = sorted(rng.sample(steps, limit))
    return steps


def after_first_action(state: State, record: dict) -> State:
    """The state reached by the first action of a continuation record taken at `state`."""
    action = record["actions"][0] if record["actions"] else ""
    return State(
        f"{state.key}+agent",
        state.task_id,
        state.prefix + (action or "",),
        state.conversations + tuple(record["turns"][:2]),
    )


def collect_step_data(
    make_env: Callable[[], Environment],
    policy: Policy,
    experts: list[dict],
    *,
    mc_rollouts: int,
    temperature: float,
    step_positions: int | None,
    lanes: int,
    continuations_path: str,
    values_path: str,
    seed: int = 0,
    progress: bool = True,
) -> list[dict]:
    """Run both phases for `experts`; return the joined step records."""
    by_id = {e["id"]: e for e in experts}
    starts = [  # positions drawn per trajectory, so a shard of the experts picks what the whole run would
        expert_state(e, j)
        for e in experts
        for j in chosen_steps(
            len(actions_of(e["conversations"])), step_positions, random.Random(f"{seed}|{e['id']}")
        )
    ]
    conts = run_states(
        make_env,
        policy,
        starts,
        1,
        ResumableJsonl(continuations_path),
        temperature,
        lanes,
        "step continuations" if progress else None,
    )
    # per start: the state after the agent's first action, then the expert's next state (deduplicated);
    # grouped by trajectory, so the shards of a sharded run gather back into this order (hpl.sharding)
    value_states: dict[str, State] = {}
    for s in starts:
        if s.key in conts:
            agent = after_first_action(s, conts[s.key])
            value_states[agent.key] = agent
        nxt = expert_state(by_id[s.task_id], int(s.key.rsplit("#s", 1)[1]) + 1)
        value_states.setdefault(nxt.key, nxt)
    values = run_states(
        make_env,
        policy,
        list(value_states.values()),
        mc_rollouts,
        ResumableJsonl(values_path),
        temperature,
        lanes,
        "step MC values" if progress else None,
    )
    return step_records(conts, values)


def step_records(continuations: dict[str, dict], values: dict[str, dict]) -> list[dict]:
    """Join continuations and MC values into `hpl.pairs.step_pairs` records."""
    records = []
    for key, cont in continuations.items():
        task, j = key.rsplit("#s", 1)
        agent, expert = values.get(f"{key}+agent"), values.get(f"{task}#s{int(j) + 1}")
        if agent is None or expert is None:
            continue
        records.append(
            {
                "task_id": task,
                "step": int(j),
                "agent_turns": cont["turns"],
                "agent_reward": cont["rewards"][0],
                "agent_mc": agent["value"],
                "expert_mc": expert["value"],
            }
        )
    return records
