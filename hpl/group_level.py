"""Group-level data, HPL's core (REFERENCE.md section 5).

For each expert group [s, e] (a segment of an expert trajectory's actions):
1. **Losing groups.** From the state before the group (s_s), pi_ref (temperature 1) generates as many
   actions as the expert group has, stopping early if the episode ends. Up to `negatives` distinct losing
   groups per expert group, at most `tries` samples per wanted negative; a negative must differ (as an
   action list) from the expert group and from the earlier negatives.
2. **Group rewards** (paper eq. 2). A group's value is the mean final reward of M pi_ref rollouts that
   complete the episode from the state after the group. The expert group's value is the MC value at its
   end step (state s_{e+1}). A negative's *final reward* is the outcome of the first of its M rollouts
   (pi_ref's own completion after the group, as IPR scores the agent's continuation).
3. **Pair filter** (HPL's release): keep (expert group chosen, negative rejected) when expert final >=
   agent final, expert MC > agent MC + `mc_gap`, and expert MC >= `min_expert_mc`.
   `difficulty` = expert MC - agent MC (so > mc_gap), `group_length` = number of actions in the negative.
   The prompt is the expert history up to the group start.

The reward table (one row per expert group, its negatives and all their rollout rewards) is written before
any filtering, so thresholds can be changed without new rollouts.
"""

from __future__ import annotations

from collections.abc import Callable

from hpl.envs.base import Environment
from hpl.io import ResumableJsonl
from hpl.pairs import FilterReport, prefix_turns
from hpl.policy import Policy
from hpl.rollouts import State, rollout_states, run_states
from hpl.step_level import expert_state
from hpl.trajectory import OPENING_TURNS, actions_of


def group_key(task_id: str, start: int, end: int) -> str:
    return f"{task_id}#g{start}-{end}"


def expert_group_turns(record: dict, start: int, end: int) -> list[dict]:
    """The expert's turns of actions start..end: agent turns with the observations between them."""
    return record["conversations"][OPENING_TURNS + 2 * start : OPENING_TURNS + 2 * end + 1]


def group_start_state(record: dict, start: int, end: int) -> State:
    """s_start, with a turn limit that stops generation after as many actions as the group has."""
    base = expert_state(record, start)
    return State(
        group_key(record["id"], start, end), base.task_id, base.prefix, base.conversations, limit=end + 1
    )


def _distinct(actions: list, expert: list, found: list[list]) -> bool:
    return bool(actions) and actions != expert and all(actions != other for other in found)


def sample_negatives(
    make_env: Callable[[], Environment],
    policy: Policy,
    experts: dict[str, dict],
    segments: dict[str, list[list[int]]],
    *,
    negatives: int,
    tries: int,
    temperature: float,
    lanes: int,
    log: ResumableJsonl,
    progress: bool = True,
) -> dict[str, dict]:
    """Losing groups for every expert group, sampled in rounds until each has enough or runs out of tries."""
    wanted: dict[str, dict] = {}
    for task, segs in segments.items():
        record = experts[task]
        actions = [a or "" for a in actions_of(record["conversations"])]
        for start, end in segs:
            state = group_start_state(record, start, end)
            if not log.done(state.key):
                wanted[state.key] = {
                    "state": state,
                    "expert": actions[start : end + 1],
                    "found": [],
                    "budget": negatives * tries,
                }
    round_ = 0
    while wanted:
        round_ += 1
        states = [w["state"] for w in wanted.values()]
        counts = {k: negatives - len(w["found"]) for k, w in wanted.items()}
        n = max(counts.values())
        results = rollout_states(
            make_env,
            policy,
            states,
            n,
            temperature=temperature,
            lanes=lanes,
            progress=f"losing groups, round {round_}" if progress else None,
        )
        for result in results:
            w = wanted[result.state.key]
            for rollout in result.rollouts:
                w["budget"] -= 1
                acts = [a or "" for a in rollout.actions]
                if len(w["found"]) < negatives and _distinct(
                    acts, w["expert"], [f["actions"] for f in w["found"]]
                ):
                    w["found"].append(
                        {
                            "actions": acts,
                            "turns": rollout.turns,
                            "reward": rollout.reward,
                            "observation_after": rollout.observation_after,
                        }
                    )
        for key in list(wanted):
            w = wanted[key]
            if len(w["found"]) >= negatives or w["budget"] <= 0:
                log.add({"id": key, "task_id": w["state"].task_id, "negatives": w["found"]})
                del wanted[key]
    return {r["id"]: r for r in log.records.values()}


def _bounds(key: str) -> tuple[str, int, int]:
    task, span = key.rsplit("#g", 1)
    start, end = span.split("-")
    return task, int(start), int(end)


def value_states(experts: dict[str, dict], negatives: dict[str, dict]) -> list[State]:
    """States whose MC value the pairs need: after each expert group, and after each negative."""
    states: dict[str, State] = {}
    for key, row in negatives.items():
        task, start, end = _bounds(key)
        after = expert_state(experts[task], end + 1)
        states[after.key] = after
        base = expert_state(experts[task], start)
        for i, neg in enumerate(row["negatives"]):
            after_turn = (neg["observation_after"],) if neg.get("observation_after") else ()
            states[f"{key}#n{i}"] = State(
                f"{key}#n{i}",
                task,
                base.prefix + tuple(neg["actions"]),
                base.conversations + tuple(neg["turns"]) + after_turn,
            )
    return list(states.values())


def group_values(
    make_env: Callable[[], Environment],
    policy: Policy,
    states: list[State],
    *,
    mc_rollouts: int,
    temperature: float,
    lanes: int,
    log: ResumableJsonl,
    progress: bool = True,
) -> dict[str, dict]:
    """MC values of `states` (resumable through `log`, which this finishes)."""
    progress_label = "group MC values" if progress else None
    return run_states(make_env, policy, states, mc_rollouts, log, temperature, lanes, progress_label)


def reward_table(experts: dict[str, dict], negatives: dict[str, dict], values: dict[str, dict]) -> list[dict]:
    """One row per expert group: its MC value and final reward, and each negative's."""
    rows = []
    for key, row in negatives.items():
        task, start, end = _bounds(key)
        expert_after = values[f"{task}#s{end + 1}"]
        negs = []
        for i, neg in enumerate(row["negatives"]):
            value = values[f"{key}#n{i}"]
            negs.append(
                {
                    "actions": neg["actions"],
                    "turns": neg["turns"],
                    "mc": value["value"],
                    "final": value["rewards"][0] if value["rewards"] else 0.0,
                    "rewards": value["rewards"],
                }
            )
        rows.append(
            {
                "id": key,
                "task_id": task,
                "start": start,
                "end": end,
                "expert_mc": expert_after["value"],
                "expert_rewards": expert_after["rewards"],
                "expert_final": experts[task]["reward"],
                "negatives": negs,
            }
        )
    return rows


def group_pairs(
    experts: dict[str, dict], table: list[dict], mc_gap: float = 0.3, min_expert_mc: float = 0.8
) -> tuple[list[dict], FilterReport]:
    """Filter the reward table into group-level preference pairs."""
    report = FilterReport("group")
    pairs = []
    for row in table:
        expert = experts[row["task_id"]]
        if not row["negatives"]:
            report.fail("no distinct losing group")
        for i, neg in enumerate(row["negatives"]):
            report.candidates += 1
            if not row["expert_final"] >= neg["final"]:
                report.fail("expert final >= agent final")
                continue
            if not round(row["expert_mc"] - neg["mc"], 9) > mc_gap:
                report.fail(f"MC value gap > {mc_gap}")
                continue
            if not row["expert_mc"] >= min_expert_mc:
                report.fail(f"expert MC >= {min_expert_mc}")
                continue
            pairs.append(
                {
                    "id": f"{row['id']}#n{i}",
                    "task_id": row["task_id"],
                    "start": row["start"],
                    "end": row["end"],
                    "prompt": prefix_turns(expert["conversations"], row["start"]),
                    "chosen": expert_group_turns(expert, row["start"], row["end"]),
                    "rejected": neg["turns"],
                    "group_length": len(neg["actions"]),
                    "difficulty": round(row["expert_mc"] - neg["mc"], 9),
                    "chosen_mc": row["expert_mc"],
                    "rejected_mc": neg["mc"],
                    "chosen_reward": row["expert_final"],
                    "rejected_reward": neg["final"],
                }
            )
    report.kept = len(pairs)
    return pairs, report
