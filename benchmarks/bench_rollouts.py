"""Monte Carlo rollout throughput with a real policy: the naive path vs hpl's rollout engine, one run.

- naive: what IPR's released scripts do: for every rollout, load the game on the stock engine (planner
  translation included), replay the prefix, let the policy finish the episode, one episode at a time;
- hpl: `hpl.rollouts.rollout_states`, which reaches a state once per lane, restores it from a snapshot for
  every further rollout (Fast Downward state registry), uses memoized command text, and batches the
  policy's generation across `--lanes` live rollouts.

Both use the same policy checkpoint, states and rollout length (the episode is cut `--steps` actions after
the state, so the figures compare engines rather than how long a policy wanders), and print rollouts/min.

    python benchmarks/bench_rollouts.py --model results/alfworld/tiny/train/sft/seed0 --states 4 --rollouts 5
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_alfworld import data_dir_from_mirror, stock_engine  # noqa: E402

from hpl.alfworld.data import game_path  # noqa: E402
from hpl.alfworld.env import INSTRUCTION, AlfworldEnv, first_observation, to_engine_command  # noqa: E402
from hpl.envs.base import Environment, StepResult  # noqa: E402
from hpl.episodes import select_tasks  # noqa: E402
from hpl.policy import HFPolicy  # noqa: E402
from hpl.rollouts import State, rollout_states  # noqa: E402
from hpl.trajectory import new_conversation  # noqa: E402


class StockAlfworld(Environment):
    """ALFWorld on the unmodified engine: every reset loads and translates the game again."""

    name = "alfworld-stock"

    def __init__(self, data_dir: Path, max_turns: int) -> None:
        super().__init__()
        self.data_dir, self.max_turns = data_dir, max_turns
        self.engine = stock_engine()
        self.state = None

    def task_ids(self, split: str) -> list[str]:
        return AlfworldEnv(self.data_dir).task_ids(split)

    def instruction(self) -> str:
        return INSTRUCTION

    def _reset(self, task_id):
        self.engine.load(str(game_path(self.data_dir, task_id)))
        self.state = self.engine.reset()
        return first_observation(self.state.feedback), {}

    def _step(self, action):
        command = to_engine_command(action, set(self.state["admissible_commands"]))
        self.state, _, done = self.engine.step(command)
        won = bool(self.state["won"])
        return StepResult(self.state.feedback.strip(), float(won), won, {})


def states_for(env: AlfworldEnv, tasks: list[str], prefix_len: int) -> list[State]:
    """Mid-episode states: `prefix_len` walkthrough actions into each task."""
    states = []
    for task in tasks:
        observation, _ = env.reset(task)
        conversation = new_conversation(env.instruction(), observation)
        actions = []
        for command in env.walkthrough[:prefix_len]:
            result = env.step(command)
            actions.append(command)
            conversation += [
                {"from": "gpt", "value": f"Thought: next.\nAction: {command}"},
                {"from": "human", "value": f"Observation: {result.observation}"},
            ]
        states.append(State(f"{task}#{prefix_len}", task, tuple(actions), tuple(conversation)))
    return states


def measure(make_env, policy, states, n, steps, lanes, naive) -> tuple[int, float]:
    started = time.perf_counter()
    results = rollout_states(
        make_env,
        policy,
        states,
        n,
        temperature=1.0,
        lanes=lanes,
        naive=naive,
        max_turns=len(states[0].prefix) + steps,
    )
    return sum(len(r.rollouts) for r in results), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="policy checkpoint (e.g. pi_ref)")
    parser.add_argument("--states", type=int, default=4)
    parser.add_argument("--rollouts", type=int, default=5, help="M rollouts per state")
    parser.add_argument("--steps", type=int, default=10, help="actions per rollout after the state")
    parser.add_argument("--prefix", type=int, default=2, help="walkthrough actions before the state")
    parser.add_argument("--lanes", type=int, default=16)
    parser.add_argument(
        "--lookahead",
        type=int,
        default=2,
        help="prompt-lookup draft tokens of the last path (generation.lookahead)",
    )
    parser.add_argument(
        "--actions",
        choices=["free", "admissible"],
        default="admissible",
        help="decoding mode (the embedded default's on ALFWorld: admissible)",
    )
    args = parser.parse_args()

    data_dir = data_dir_from_mirror()
    cache = Path(tempfile.mkdtemp(prefix="hpl-bench-"))
    fast = AlfworldEnv(data_dir, cache_dir=cache)
    tasks = select_tasks(fast.task_ids("seen"), args.states, seed=1)
    states = states_for(fast, tasks, args.prefix)
    max_turns = args.prefix + args.steps

    def policy(reuse: bool, lookahead: int = 0) -> HFPolicy:  # the reply budget and window of the model
        return HFPolicy(
            args.model,
            max_new_tokens=None,
            batch_size=args.lanes,
            actions=args.actions,
            prefix_cache=reuse,
            lookahead=lookahead,
        )

    def ours(reuse: bool, lookahead: int = 0) -> tuple[int, float]:
        make_env = lambda: AlfworldEnv(data_dir, max_turns=max_turns, cache_dir=cache)  # noqa: E731
        return measure(
            make_env, policy(reuse, lookahead), states, args.rollouts, args.steps, args.lanes, False
        )

    runs = [
        (
            "naive (stock reset + replay, one at a time)",
            measure(
                lambda: StockAlfworld(data_dir, max_turns),
                policy(False),
                states,
                args.rollouts,
                args.steps,
                1,
                True,
            ),
        ),
        (f"hpl.rollouts (restore, {args.lanes} lanes, re-encoding)", ours(False)),
        (f"hpl.rollouts + prefix cache ({args.lanes} lanes)", ours(True)),
        (f"... + prompt lookup ({args.lookahead} draft tokens)", ours(True, args.lookahead)),
    ]
    print(
        f"{args.states} states x {args.rollouts} rollouts, {args.steps} actions each, {args.actions} actions, "
        f"policy {args.model}"
    )
    rates = []
    for name, (count, seconds) in runs:
        rates.append(60 * count / seconds)
        print(f"{name:55s} {count:4d} rollouts in {seconds:7.1f} s = {rates[-1]:7.1f} rollouts/min")
    for name, rate in [("prefix cache", rates[2]), ("prefix cache + prompt lookup", rates[3])]:
        print(f"{name}: {rate / rates[0]:.1f}x naive, {rate / rates[1]:.1f}x re-encoding hpl.rollouts")


if __name__ == "__main__":
    main()
