"""Training step time with and without an attention mask on right-padded batches (hpl.trainer.right_padded).

On a tiny model built from an expert file as rules/models.smk builds it, batches of SFT examples (length-
grouped, as `training.sft.group_by_length` makes them) are run forward and backward twice: with the
padding mask the collators used to send (SDPA's masked kernel) and without it (its causal kernel, what
they send now). Both give the same loss; the script prints the largest difference beside the times.

    python benchmarks/bench_training.py results/webshop/expert/train.jsonl --batches 12 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import yaml  # noqa: E402

from hpl.context import derive_rule  # noqa: E402
from hpl.io import read_jsonl  # noqa: E402
from hpl.models import build_tiny_model  # noqa: E402
from hpl.sft import PadCollator, sft_examples  # noqa: E402


def length_grouped_batches(examples: list[dict], batch_size: int, count: int) -> list[list[dict]]:
    """`count` batches of neighbours in length order, spread over the whole length range."""
    ordered = sorted(examples, key=lambda e: len(e["input_ids"]))
    starts = range(0, len(ordered) - batch_size + 1, batch_size)
    picked = [starts[i * len(starts) // count] for i in range(min(count, len(starts)))]
    return [ordered[s : s + batch_size] for s in picked]


def step_seconds(model, batch: dict, mask) -> tuple[float, float]:
    started = time.perf_counter()
    loss = model(input_ids=batch["input_ids"], attention_mask=mask, labels=batch["labels"]).loss
    loss.backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - started, float(loss.detach())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("expert", help="an expert file (results/{bench}/expert/train.jsonl)")
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the embedded config's")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "config/config.yaml"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = yaml.safe_load(Path(args.config).read_text())
    batch_size = args.batch_size or config["training"]["sft"]["batch_size"]
    records = read_jsonl(args.expert)
    with tempfile.TemporaryDirectory() as folder:
        model, tokenizer = build_tiny_model(records, Path(folder), config["model_specs"]["tiny"])
        rule = derive_rule(tokenizer, records, config["generation"], model.config.max_position_embeddings)
        examples = sft_examples(tokenizer, records, rule.window)
    collate = PadCollator(tokenizer.pad_token_id)
    times = {"masked": [], "causal": []}
    tokens = padded = 0
    worst = 0.0
    for group in length_grouped_batches(examples, batch_size, args.batches):
        batch = collate(group)
        lengths = [len(e["input_ids"]) for e in group]
        mask = torch.tensor([[1] * n + [0] * (batch["input_ids"].shape[1] - n) for n in lengths])
        tokens += sum(lengths)
        padded += batch["input_ids"].numel() - sum(lengths)
        masked_s, masked_loss = step_seconds(model, batch, mask)
        causal_s, causal_loss = step_seconds(model, batch, None)
        times["masked"].append(masked_s)
        times["causal"].append(causal_s)
        worst = max(worst, abs(masked_loss - causal_loss))
    print(
        f"{args.expert}: {len(times['causal'])} batches of {batch_size}, {tokens} tokens "
        f"(+{padded} pads), {args.threads} thread(s)"
    )
    for name, values in times.items():
        print(
            f"  {name:7s} {sum(values):7.2f} s  ({tokens / sum(values):6.0f} tokens/s, "
            f"median step {statistics.median(values):.3f} s)"
        )
    print(
        f"  speed-up without the mask: {sum(times['masked']) / sum(times['causal']):.2f}x; "
        f"largest loss difference {worst:.2e}"
    )


if __name__ == "__main__":
    main()
