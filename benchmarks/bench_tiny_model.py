"""SFT tokens/s and evaluation episodes/min of the embedded tiny model on real ALFWorld games.

Builds the tiny model of `config/config.yaml` on handcoded-expert trajectories of a few training games,
runs SFT for a fixed number of steps (tokens/s), then plays the same greedy episodes on validation games
with batched generation three ways: re-encoding every prompt (the path before `generation.prefix_cache`),
encoding only each turn's new tokens (hpl.prefix_cache), and that plus prompt-lookup drafts
(`generation.lookahead`). The games are played once untimed first (the engine's caches fill then). Prints
episodes/min, mean turns, seconds per batched policy call and whether every path chose the same actions.

    python benchmarks/bench_tiny_model.py --games 24 --steps 20 --episodes 16
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import yaml  # noqa: E402

from hpl.alfworld.data import prepare_alfworld_data  # noqa: E402
from hpl.alfworld.env import AlfworldEnv  # noqa: E402
from hpl.alfworld.expert import collect_expert  # noqa: E402
from hpl.episodes import play, select_tasks  # noqa: E402
from hpl.mirror import PROJECT_ROOT, benchmark_mirror  # noqa: E402
from hpl.models import build_tiny_model, parameter_count  # noqa: E402
from hpl.policy import HFPolicy  # noqa: E402
from hpl.sft import train_sft  # noqa: E402


class CountingPolicy(HFPolicy):
    calls = 0
    seconds = 0.0

    def act(self, conversations, temperature=0.0, keys=None, **kwargs):
        started = time.perf_counter()
        try:
            return super().act(conversations, temperature, keys, **kwargs)
        finally:
            self.calls += 1
            self.seconds += time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--games", type=int, default=24, help="training games for expert data")
    parser.add_argument("--steps", type=int, default=20, help="SFT optimiser steps")
    parser.add_argument("--episodes", type=int, default=16, help="evaluation episodes (seen split)")
    parser.add_argument("--threads", type=int, default=2)
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
    torch.set_num_threads(args.threads)

    config = yaml.safe_load((PROJECT_ROOT / "config" / "config.yaml").read_text())
    work = Path(tempfile.mkdtemp(prefix="hpl-bench-tiny-"))
    data = prepare_alfworld_data(work / "data", benchmark_mirror(config["data_mirror"], "alfworld"))
    env = AlfworldEnv(data, cache_dir=work / "translations")
    records, _ = collect_expert(
        data,
        select_tasks(env.task_ids("train"), args.games, seed=0),
        progress=False,
        cache_dir=work / "translations",
    )

    gen = config["generation"]
    model, tokenizer = build_tiny_model(records, work / "base", config["model_specs"]["tiny"], generation=gen)
    hp = dict(config["training"]["sft"], max_steps=args.steps, save_steps=10**6, logging_steps=10**6)
    metrics = train_sft(str(work / "base"), records, str(work / "sft"), hp, generation=gen)

    print(
        f"tiny model: {parameter_count(model):,} parameters, vocabulary {len(tokenizer)}, "
        f"{len(records)} expert trajectories"
    )
    print(f"SFT: {metrics['steps']} steps, {metrics['tokens_per_second']:.0f} tokens/s")
    tasks = select_tasks(env.task_ids("seen"), args.episodes, seed=0)
    actions = {}
    rates = {}
    paths = [
        ("re-encoding every prompt", {"prefix_cache": False}),
        ("prefix cache", {}),
        (f"prefix cache + prompt lookup ({args.lookahead})", {"lookahead": args.lookahead}),
    ]
    # the engine's first pass over these games fills its caches (translations, memoized steps): played once
    # before timing, so that no path pays for it
    warm = HFPolicy(str(work / "sft"), batch_size=gen["parallel_episodes"], actions=args.actions)
    play(lambda: AlfworldEnv(data, cache_dir=work / "translations"), warm, tasks, parallel=16)
    for name, options in paths:
        policy = CountingPolicy(
            str(work / "sft"), batch_size=gen["parallel_episodes"], actions=args.actions, **options
        )
        started = time.perf_counter()
        episodes = play(
            lambda: AlfworldEnv(data, cache_dir=work / "translations"),
            policy,
            tasks,
            parallel=gen["parallel_episodes"],
            temperature=0.0,
        )
        seconds = time.perf_counter() - started
        actions[name] = [e.actions for e in episodes]
        rates[name] = 60 * len(episodes) / seconds
        turns = sum(e.turns for e in episodes)
        print(
            f"evaluation, {name}: {len(episodes)} episodes in {seconds:.1f} s = {rates[name]:.1f} episodes/min, "
            f"{turns / len(episodes):.1f} turns/episode, {policy.calls} batched calls, "
            f"{policy.seconds / max(policy.calls, 1):.2f} s/call ({policy.seconds / seconds:.0%} in generation)"
        )
    old = rates[paths[0][0]]
    same = all(a == actions[paths[0][0]] for a in actions.values())
    speedups = ", ".join(f"{name} {rate / old:.2f}x" for name, rate in list(rates.items())[1:])
    print(f"{args.actions} actions; speed-up over re-encoding: {speedups}; greedy actions identical: {same}")


if __name__ == "__main__":
    main()
