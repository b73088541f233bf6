"""ALFWorld engine latency and Monte Carlo rollout throughput: stock engine vs hpl's fast path.

    python benchmarks/bench_alfworld.py [--games 6] [--rollouts 4] [--steps 10] [--data-dir DIR]

Prints (one process, one core):
- reset latency: the stock engine (textworld PddlEnv + ALFWorld wrappers) cold; hpl's env cold (empty
  caches), from the disk translation cache (fresh process state), from the in-memory cache, and a reset of
  the game already loaded (its initial state restored);
- step latency: stock engine vs hpl's env (memoized command text), on the games' walkthroughs;
- rollouts/min for 10-step random-admissible-action rollouts from a mid-episode state (after three
  walkthrough steps): stock reset + replay (what IPR/HPL's scripts do), hpl reset + replay (cached reset),
  hpl snapshot/restore with stock steps, and hpl snapshot/restore with memoized steps.
Games: the first --games validation games (valid_seen), spread over the six task types.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hpl.alfworld.data import prepare_alfworld_data, task_type  # noqa: E402
from hpl.alfworld.engine import installed_versions  # noqa: E402
from hpl.alfworld.env import AlfworldEnv  # noqa: E402
from hpl.envs.base import Environment, ReplaySnapshot  # noqa: E402
from hpl.mirror import PROJECT_ROOT, benchmark_mirror  # noqa: E402


def stock_engine():
    import textworld
    from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredInfos
    from textworld.envs.pddl import PddlEnv

    infos = textworld.EnvInfos(
        won=True, admissible_commands=True, facts=True, extras=["gamefile", "walkthrough"]
    )
    return AlfredInfos(AlfredDemangler(PddlEnv(infos), shuffle=False))


def timed(fn, *args):
    start = time.perf_counter()
    value = fn(*args)
    return time.perf_counter() - start, value


def load_and_reset(engine, path: str):
    engine.load(path)
    return engine.reset()


def median_ms(values: list[float]) -> str:
    return f"{1000 * statistics.median(values):8.1f} ms (min {1000 * min(values):.1f}, max {1000 * max(values):.1f}, n={len(values)})"


def pick_games(env: AlfworldEnv, n: int) -> list[str]:
    by_type = defaultdict(list)
    for task_id in env.task_ids("seen"):
        by_type[task_type(task_id)].append(task_id)
    games, i = [], 0
    while len(games) < n:
        for kind in sorted(by_type):
            if len(games) < n and i < len(by_type[kind]):
                games.append(by_type[kind][i])
        i += 1
    return games


def data_dir_from_mirror() -> Path:
    config = yaml.safe_load((PROJECT_ROOT / "config" / "config.yaml").read_text()) or {}
    mirror = benchmark_mirror(config.get("data_mirror"), "alfworld")
    dest = Path(tempfile.gettempdir()) / "hpl-bench-alfworld-data"
    return prepare_alfworld_data(dest, mirror, splits=["seen", "unseen"])


def bench_resets(data_dir: Path, games: list[str], cache_dir: Path) -> tuple[dict, AlfworldEnv]:
    argv = list(sys.argv)
    rows = defaultdict(list)
    stock = stock_engine()
    for task_id in games:
        path = str(data_dir / "json_2.1.1" / task_id / "game.tw-pddl")
        rows["stock engine, load + reset"].append(timed(load_and_reset, stock, path)[0])
        rows["stock engine, reset of the loaded game"].append(timed(stock.reset)[0])
        sys.argv[:] = argv  # fast_downward.pddl2sas overwrites sys.argv
    cold = AlfworldEnv(data_dir, cache_dir=cache_dir)
    for task_id in games:
        rows["hpl cold (translate, write disk cache)"].append(timed(cold.reset, task_id)[0])
    disk = AlfworldEnv(data_dir, cache_dir=cache_dir)  # empty memory, warm disk
    for task_id in games:
        rows["hpl from disk cache"].append(timed(disk.reset, task_id)[0])
    for task_id in games:  # another game was loaded in between: memory cache, new PDDL state
        rows["hpl from memory cache"].append(timed(disk.reset, task_id)[0])
        rows["hpl reset of the loaded game (restore)"].append(timed(disk.reset, task_id)[0])
    return rows, disk


def bench_steps(data_dir: Path, games: list[str], env: AlfworldEnv) -> dict:
    rows = defaultdict(list)
    stock = stock_engine()
    argv = list(sys.argv)
    for task_id in games:
        stock.load(str(data_dir / "json_2.1.1" / task_id / "game.tw-pddl"))
        state = stock.reset()
        sys.argv[:] = argv
        plan = list(state["extra.walkthrough"])
        for command in plan:
            rows["stock engine step"].append(timed(stock.step, command)[0])
        for fresh in (True, False):  # first pass fills the command-text memo
            env.reset(task_id)
            key = "hpl step, memoized text (cold memo)" if fresh else "hpl step, memoized text (warm)"
            for command in plan:
                rows[key].append(timed(env.step, command)[0])
    return rows


def rollout(env_step, admissible, rng: random.Random, steps: int) -> None:
    for _ in range(steps):
        done = env_step(rng.choice(admissible()))
        if done:
            return


def stock_rollout(stock, state, rng: random.Random, steps: int) -> None:
    for _ in range(steps):
        state, _, done = stock.step(rng.choice(state["admissible_commands"]))
        if done:
            return


def bench_rollouts(data_dir: Path, games: list[str], n: int, steps: int, cache_dir: Path) -> dict:
    argv = list(sys.argv)
    rates = {}
    stock = stock_engine()
    fast = AlfworldEnv(data_dir, cache_dir=cache_dir)
    slow_steps = AlfworldEnv(data_dir, cache_dir=cache_dir, fast_commands=False)

    def stock_rollouts() -> tuple[int, float]:
        count, seconds = 0, 0.0
        for task_id in games:
            path = str(data_dir / "json_2.1.1" / task_id / "game.tw-pddl")
            stock.load(path)
            prefix = list(stock.reset()["extra.walkthrough"])[:3]
            for i in range(n):
                start = time.perf_counter()
                stock.load(path)  # reset + replay, as the released scripts do (a fresh game per rollout)
                state = stock.reset()
                for command in prefix:
                    state, _, _ = stock.step(command)
                stock_rollout(stock, state, random.Random(i), steps)
                seconds += time.perf_counter() - start
                sys.argv[:] = argv
                count += 1
        return count, seconds

    def hpl_rollouts(env: AlfworldEnv, use_snapshot: bool) -> tuple[int, float]:
        """Only the rollouts are timed (restore + steps); loading the game and the prefix are setup."""
        count, seconds = 0, 0.0
        for task_id in games:
            env.reset(task_id)
            for command in env.walkthrough[:3]:
                env.step(command)
            snap = env.snapshot() if use_snapshot else ReplaySnapshot(task_id, tuple(env.actions))
            for i in range(n):
                if not use_snapshot:
                    env.reset(games[(games.index(task_id) + 1) % len(games)])  # untimed: force a real reset
                start = time.perf_counter()
                if use_snapshot:
                    env.restore(snap)
                else:
                    Environment.restore(env, snap)  # the base class: reset + replay the prefix
                rollout(lambda c: env.step(c).done, env.admissible_actions, random.Random(i), steps)
                seconds += time.perf_counter() - start
                count += 1
        return count, seconds

    for name, run in [
        ("stock reset + replay", stock_rollouts),
        ("hpl cached reset + replay", lambda: hpl_rollouts(fast, False)),
        ("hpl registry restore, stock steps", lambda: hpl_rollouts(slow_steps, True)),
        ("hpl registry restore, memoized steps", lambda: hpl_rollouts(fast, True)),
    ]:
        count, seconds = run()
        rates[name] = (count, seconds, 60 * count / seconds)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--games", type=int, default=6, help="validation games (spread over task types)")
    parser.add_argument("--rollouts", type=int, default=5, help="rollouts per game and method")
    parser.add_argument("--steps", type=int, default=10, help="random actions per rollout")
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="prepared ALFWorld data (default: from the mirror)"
    )
    args = parser.parse_args()

    data_dir = args.data_dir or data_dir_from_mirror()
    print(f"versions: {installed_versions()}")
    with tempfile.TemporaryDirectory() as tmp:
        cache_dir = Path(tmp) / "cache"
        games = pick_games(AlfworldEnv(data_dir), args.games)
        print(f"games: {len(games)} ({', '.join(task_type(g) for g in games)})\n")

        resets, env = bench_resets(data_dir, games, cache_dir)
        print("reset latency (median):")
        for name, values in resets.items():
            print(f"  {name:44s} {median_ms(values)}")

        print("\nstep latency (median):")
        for name, values in bench_steps(data_dir, games, env).items():
            print(f"  {name:44s} {median_ms(values)}")

        print(f"\n{args.steps}-step random rollouts from mid-episode (after 3 walkthrough steps):")
        rates = bench_rollouts(data_dir, games, args.rollouts, args.steps, cache_dir)
        base = rates["stock reset + replay"][2]
        for name, (count, seconds, per_min) in rates.items():
            print(
                f"  {name:44s} {per_min:8.1f} rollouts/min ({count} in {seconds:.1f} s, {per_min / base:5.1f}x)"
            )


if __name__ == "__main__":
    main()
