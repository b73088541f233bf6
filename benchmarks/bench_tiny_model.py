"""SFT tokens/s and evaluation episodes/min of the embedded tiny model on real ALFWorld games.

Builds the tiny model of `config/config.yaml` on handcoded-expert trajectories of a few training games,
runs SFT for a fixed number of steps (tokens/s), then plays greedy episodes on validation games with
batched generation (episodes/min, mean turns, seconds per batched policy call).

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
from hpl.alfworld.expert import collect_expert  # noqa: E402
from hpl.envs.alfworld import AlfworldEnv  # noqa: E402
from hpl.episodes import play, select_tasks  # noqa: E402
from hpl.mirror import PROJECT_ROOT, benchmark_mirror  # noqa: E402
from hpl.models import build_tiny_model, parameter_count  # noqa: E402
from hpl.policy import HFPolicy  # noqa: E402
from hpl.sft import train_sft  # noqa: E402


class CountingPolicy(HFPolicy):
    calls = 0
    seconds = 0.0

    def act(self, conversations, temperature=0.0, keys=None):
        started = time.perf_counter()
        try:
            return super().act(conversations, temperature)
        finally:
            self.calls += 1
            self.seconds += time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--games", type=int, default=24, help="training games for expert data")
    parser.add_argument("--steps", type=int, default=20, help="SFT optimiser steps")
    parser.add_argument("--episodes", type=int, default=16, help="evaluation episodes (seen split)")
    parser.add_argument("--threads", type=int, default=2)
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

    policy = CountingPolicy(
        str(work / "sft"),
        max_new_tokens=gen["max_new_tokens"],
        max_prompt_tokens=gen["max_prompt_tokens"],
        batch_size=gen["parallel_episodes"],
    )
    tasks = select_tasks(env.task_ids("seen"), args.episodes, seed=0)
    started = time.perf_counter()
    episodes = play(
        lambda: AlfworldEnv(data, cache_dir=work / "translations"),
        policy,
        tasks,
        parallel=gen["parallel_episodes"],
        temperature=0.0,
    )
    seconds = time.perf_counter() - started

    print(
        f"tiny model: {parameter_count(model):,} parameters, vocabulary {len(tokenizer)}, "
        f"{len(records)} expert trajectories"
    )
    print(f"SFT: {metrics['steps']} steps, {metrics['tokens_per_second']:.0f} tokens/s")
    turns = sum(e.turns for e in episodes)
    print(
        f"evaluation: {len(episodes)} episodes in {seconds:.1f} s = {60 * len(episodes) / seconds:.1f} episodes/min, "
        f"{turns / len(episodes):.1f} turns/episode, {policy.calls} batched calls, "
        f"{policy.seconds / max(policy.calls, 1):.2f} s/call ({policy.seconds / seconds:.0%} of the time in generation)"
    )


if __name__ == "__main__":
    main()
