"""The local LLM server's speed: start time and seconds per semantic-segmentation request.

    python benchmarks/bench_llm_server.py [--expert results/alfworld/expert/train.jsonl] [--requests 3]
                                          [--max-tokens 64]

Starts SmolLM2-135M-Instruct behind `transformers serve` (converting the packaged GGUF first if needed,
timed separately), then segments `--requests` trajectories with no cache, so every request reaches the
server. Trajectories come from `--expert` when given, else small synthetic ALFWorld-like ones.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from hpl.io import read_jsonl
from hpl.llm import ChatClient
from hpl.llm_server import LocalLLMServer, prepare_smollm2
from hpl.segmenters.semantic import semantic_segments
from hpl.trajectory import build_trajectory

ACTIONS = [
    ("go to countertop 1", "On the countertop 1, you see an apple 1 and a knife 1."),
    ("take apple 1 from countertop 1", "You pick up the apple 1 from the countertop 1."),
    ("go to sinkbasin 1", "On the sinkbasin 1, you see nothing."),
    ("clean apple 1 with sinkbasin 1", "You clean the apple 1 using the sinkbasin 1."),
    ("go to fridge 1", "The fridge 1 is closed."),
    ("open fridge 1", "You open the fridge 1. The fridge 1 is open. In it, you see nothing."),
    ("put apple 1 in/on fridge 1", "You put the apple 1 in/on the fridge 1."),
]


def synthetic(count: int) -> list[dict]:
    records = []
    for i in range(count):
        steps = [(f"Thought: next.\nAction: {a}", o) for a, o in ACTIONS[: 4 + i % 4]]
        task = "You are in the middle of a room. Your task is to: put a clean apple in fridge."
        records.append(build_trajectory(f"synthetic-{i}", "Interact with a household.", task, steps, 1.0))
    return records


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--expert", type=Path, help="expert trajectories (ETO jsonl) to segment")
    parser.add_argument("--requests", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()

    started = time.perf_counter()
    folder = prepare_smollm2()
    print(
        f"checkpoint ready (conversion on first use only): {time.perf_counter() - started:.1f} s  [{folder}]"
    )

    records = read_jsonl(args.expert)[: args.requests] if args.expert else synthetic(args.requests)
    with tempfile.TemporaryDirectory() as cache, LocalLLMServer(folder) as server:
        print(f"server start (process to model loaded and answering): {server.start_seconds:.1f} s")
        client = ChatClient(base_url=server.base_url, model=server.model, cache_dir=cache)
        seconds = []
        for record in records:
            t0 = time.perf_counter()
            result = semantic_segments(record, client, max_tokens=args.max_tokens)
            seconds.append(time.perf_counter() - t0)
            print(
                f"  {record['id']}: {seconds[-1]:.1f} s  {result.status:8s} {result.segments}  reply={result.reply!r:.80}"
            )
    usage = client.usage
    print(
        f"seconds per segmentation request: mean {statistics.mean(seconds):.1f}, "
        f"min {min(seconds):.1f}, max {max(seconds):.1f} over {len(seconds)} (max_tokens {args.max_tokens})"
    )
    per_token = usage.seconds / max(usage.completion_tokens, 1)
    print(
        f"calls {usage.calls}, prompt tokens {usage.prompt_tokens}, completion tokens {usage.completion_tokens} "
        f"({per_token:.2f} s per completion token)"
    )


if __name__ == "__main__":
    main()
