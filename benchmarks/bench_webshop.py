"""WebShop engine speed and search quality: env steps/second, search latency, search hit rate.

    python benchmarks/bench_webshop.py [--data-dir MIRROR/webshop] [--seed 233]

The data folder defaults to the pipeline's mirror setting (config `data_mirror`, $HPL_DATA_MIRROR).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import yaml

from hpl.envs import make_env
from hpl.mirror import PROJECT_ROOT, benchmark_mirror
from hpl.webshop.expert import plan
from hpl.webshop.goals import DEFAULT_SEED


def default_data_dir() -> Path | None:
    config = PROJECT_ROOT / "config" / "config.yaml"
    configured = (yaml.safe_load(config.read_text()) or {}).get("data_mirror") if config.exists() else None
    return benchmark_mirror(configured, "webshop")


def timed(fn, *args):
    start = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - start


def bench_build(data_dir: Path, seed: int):
    env, seconds = timed(lambda: make_env("webshop", data_dir=data_dir, seed=seed))
    print(f"env build (catalogue + goals + BM25 index, first in process): {seconds * 1000:.0f} ms")
    print(
        f"goals: {len(env.goals.goals)} ({len(env.task_ids('test'))} test, {len(env.task_ids('train'))} train)"
    )
    return env


def bench_search(env) -> None:
    for split in ("test", "train"):
        goals = env.goals.split(split)
        latencies, ranks = [], []
        for goal in goals:
            results, seconds = timed(env.engine.rank, goal.instruction_text.lower())
            latencies.append(seconds)
            ranks.append(results.index(goal.asin) if goal.asin in results else None)
        top = {k: sum(r is not None and r < k for r in ranks) / len(goals) for k in (1, 10, 50)}
        print(
            f"search [{split}, {len(goals)} goal instructions]: latency median "
            f"{statistics.median(latencies) * 1000:.2f} ms, p95 {sorted(latencies)[int(0.95 * len(latencies))] * 1000:.2f} ms; "
            f"hit rate top-1 {top[1]:.3f}, top-10 {top[10]:.3f}, top-50 {top[50]:.3f}"
        )


def bench_steps(env, episodes: int) -> None:
    """Oracle episodes plus detours (sub-pages, paging, back), timing env.step only."""
    steps, seconds = 0, 0.0
    for task_id in env.task_ids("train")[:episodes]:
        env.reset(task_id)
        actions = [action for _, action in plan(env)]
        detour = ["click[Next >]", "click[< Prev]"] if "click[Next >]" in env.admissible_actions() else []
        actions = actions[:1] + detour + actions[1:2] + ["click[Features]", "click[< Prev]"] + actions[2:]
        for action in actions:
            _, took = timed(env.step, action)
            steps, seconds = steps + 1, seconds + took
    print(f"env.step: {steps / seconds:,.0f} steps/s over {steps} steps ({episodes} episodes, cached search)")


def bench_snapshots(env, repeats: int = 10_000) -> None:
    env.reset(env.task_ids("test")[0])
    for _, action in plan(env)[:2]:
        env.step(action)
    snap = env.snapshot()
    _, seconds = timed(lambda: [env.restore(snap) for _ in range(repeats)])
    print(f"snapshot restore: {seconds / repeats * 1e6:.1f} us")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--episodes", type=int, default=2000)
    args = parser.parse_args(argv)
    data_dir = args.data_dir or default_data_dir()
    if data_dir is None:
        print("no WebShop data: pass --data-dir or set data_mirror / $HPL_DATA_MIRROR", file=sys.stderr)
        return 2
    env = bench_build(data_dir, args.seed)
    bench_search(env)
    bench_steps(env, args.episodes)
    bench_snapshots(env)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
