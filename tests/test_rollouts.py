"""Monte Carlo rollouts on the real ALFWorld engine: restored states play exactly like replayed ones."""

import re

import pytest

from hpl.alfworld.env import AlfworldEnv
from hpl.episodes import select_tasks
from hpl.rollouts import State, mc_value, rollout_states
from hpl.trajectory import new_conversation


class ReceptacleTour:
    """A deterministic policy whose actions depend on what the environment says: it visits the
    receptacles listed in the first observation in order and opens each closed one it finds."""

    def act(self, conversations, temperature=0.0, keys=None):
        return [self._next(turns) for turns in conversations]

    @staticmethod
    def _next(turns):
        receptacles = re.findall(r"an? ([a-z]+ \d+)", turns[2]["value"].split("Your task")[0])
        last = turns[-1]["value"]
        closed = re.search(r"The ([a-z]+ \d+) is closed", last)
        visits = sum(1 for t in turns[3:] if t["from"] == "gpt" and "go to" in t["value"])
        if closed:
            return f"Thought: it is closed.\nAction: open {closed.group(1)}"
        return f"Thought: next place.\nAction: go to {receptacles[visits % len(receptacles)]}"


@pytest.fixture(scope="module")
def states(alfworld_data):
    env = AlfworldEnv(alfworld_data)
    found = []
    for task in select_tasks(env.task_ids("seen"), 3, seed=3):
        observation, _ = env.reset(task)
        turns = new_conversation(env.instruction(), observation)
        prefix = tuple(env.walkthrough[:2])
        for action in prefix:
            result = env.step(action)
            turns += [
                {"from": "gpt", "value": f"Thought: go.\nAction: {action}"},
                {"from": "human", "value": f"Observation: {result.observation}"},
            ]
        found.append(State(f"{task}#2", task, prefix, tuple(turns)))
    return found


def _run(alfworld_data, states, naive, lanes=4, n=3):
    results = rollout_states(
        lambda: AlfworldEnv(alfworld_data, max_turns=8),
        ReceptacleTour(),
        states,
        n,
        temperature=0.0,
        lanes=lanes,
        naive=naive,
    )
    return {r.state.key: r for r in results}


def test_restored_rollouts_equal_replayed_ones(alfworld_data, states):
    naive = _run(alfworld_data, states, naive=True)
    fast = _run(alfworld_data, states, naive=False)
    assert set(naive) == set(fast) == {s.key for s in states}
    for key in naive:
        assert len(fast[key].rollouts) == 3
        for a, b in zip(naive[key].rollouts, fast[key].rollouts):
            assert a.turns == b.turns and a.reward == b.reward  # observations included
        observations = [t["value"] for t in fast[key].rollouts[0].turns if t["from"] == "human"]
        assert len(observations) == 5 and any("you see" in o or "open" in o for o in observations)
        assert 0.0 <= fast[key].value <= 1.0


def test_terminal_state_gets_its_reward_without_play(alfworld_data):
    env = AlfworldEnv(alfworld_data)
    task = env.task_ids("seen")[0]
    observation, _ = env.reset(task)
    walkthrough = env.walkthrough
    state = State("won", task, tuple(walkthrough), tuple(new_conversation(env.instruction(), observation)))
    (result,) = rollout_states(lambda: AlfworldEnv(alfworld_data), ReceptacleTour(), [state], 2, lanes=2)
    assert [r.reward for r in result.rollouts] == [1.0, 1.0]
    assert all(r.turns == [] for r in result.rollouts) and mc_value(result.rollouts) == 1.0


def test_rollouts_respect_a_state_turn_limit(alfworld_data, states):
    limited = [State(s.key, s.task_id, s.prefix, s.conversations, limit=len(s.prefix) + 2) for s in states]
    results = _run(alfworld_data, limited, naive=False, n=1)
    for result in results.values():
        assert len(result.rollouts[0].actions) == 2
