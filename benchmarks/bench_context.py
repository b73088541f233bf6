"""How expert data fit the model's context, before and after the shared context rule (hpl.context).

For each expert file: the tiny model built on it as rules/models.smk builds it (its tokenizer loaded
back from the folder, its context sized to the data), then
- before (the rule up to issue 16): replies longer than max_new_tokens 48, trajectories longer than
  training.sft.max_length 1536 (their tail was dropped), prompts longer than 1024 tokens (cut);
- after: `hpl.context.data_fit` under the rule the embedded config derives (max_positions null);
- tokens per SFT example, and the time of an SFT step (batch 8, embedded tiny model) at both lengths.

    python benchmarks/bench_context.py results/{alfworld,webshop,intercode_sql}/expert/train.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml  # noqa: E402

from hpl.chat import encode_turns, generation_prompt  # noqa: E402
from hpl.context import data_fit, derive_rule  # noqa: E402
from hpl.io import read_jsonl  # noqa: E402
from hpl.models import build_tiny_model  # noqa: E402

OLD = {"max_new_tokens": 48, "max_length": 1536, "max_prompt_tokens": 1024}


def before(tokenizer, records: list[dict]) -> dict:
    replies = prompts = cut_replies = cut_prompts = 0
    lengths = []
    for record in records:
        conv = record["conversations"]
        lengths.append(len(encode_turns(tokenizer, conv).input_ids))
        for index in range(3, len(conv), 2):
            body = tokenizer(conv[index]["value"] + "<|im_end|>", add_special_tokens=False)["input_ids"]
            replies += 1
            cut_replies += len(body) > OLD["max_new_tokens"]
            prompts += 1
            cut_prompts += len(generation_prompt(tokenizer, conv[:index])) > OLD["max_prompt_tokens"]
    examples = [min(n, OLD["max_length"]) for n in lengths]
    return {
        "replies_cut": f"{cut_replies}/{replies}",
        "trajectories_shortened": f"{sum(n > OLD['max_length'] for n in lengths)}/{len(records)}",
        "prompts_shortened": f"{cut_prompts}/{prompts}",
        "tokens_per_example": round(sum(examples) / len(examples), 1),
        "median_trajectory": sorted(lengths)[len(lengths) // 2],
        "longest_trajectory": max(lengths),
    }


def step_seconds(spec: dict, positions: int, examples: list[list[int]], steps: int, batch: int = 8) -> float:
    """Mean seconds of an SFT step (forward, backward, AdamW) over `steps` random batches."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=spec["vocab_size"],
        hidden_size=spec["hidden_size"],
        intermediate_size=spec["intermediate_size"],
        num_hidden_layers=spec["num_layers"],
        num_attention_heads=spec["num_heads"],
        num_key_value_heads=spec["num_heads"],
        max_position_embeddings=positions,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    rng = random.Random(0)
    times = []
    for _ in range(steps):
        rows = rng.sample(examples, min(batch, len(examples)))
        width = max(len(r) for r in rows)
        ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        started = time.perf_counter()
        loss = model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - started)
    return round(sum(times) / len(times), 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("expert", nargs="+", help="expert train.jsonl files")
    parser.add_argument("--steps", type=int, default=3, help="timed SFT steps per setting (0: no timing)")
    args = parser.parse_args()
    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "config.yaml").read_text())
    spec, generation = config["model_specs"]["tiny"], config["generation"]
    for path in args.expert:
        records = read_jsonl(path)
        with tempfile.TemporaryDirectory() as folder:
            model, tokenizer = build_tiny_model(records, folder, spec, generation=generation)
        positions = model.config.max_position_embeddings
        rule = derive_rule(tokenizer, records, generation, positions, config["training"]["sft"]["max_length"])
        after = data_fit(tokenizer, records, rule)
        result = {"file": path, "trajectories": len(records), "max_positions": positions}
        result |= {"before": before(tokenizer, records), "after": after}
        if args.steps:
            whole = [encode_turns(tokenizer, r["conversations"]).input_ids for r in records]
            result["sft_step_s_before"] = step_seconds(
                spec, positions, [w[: OLD["max_length"]] for w in whole], args.steps
            )
            result["sft_step_s_after"] = step_seconds(spec, positions, whole, args.steps)
        print(json.dumps(result, indent=1), flush=True)


if __name__ == "__main__":
    main()
