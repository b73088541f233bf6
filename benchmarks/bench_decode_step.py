"""Where a batched decode step's time goes: `hpl.prefix_cache.decode` per step (free and admissible), a
bare Hugging Face forward with a DynamicCache, and attention alone at a long context.

The model is the embedded tiny model as the pipeline builds it (`config/config.yaml`, model_specs.tiny),
untrained: only the shapes matter for time. Prompts are synthetic ALFWorld-like text; every row decodes to the budget.

    python benchmarks/bench_decode_step.py --rows 16 --prompt 1000 --context 4000 --threads 1
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import yaml  # noqa: E402

from hpl.admissible import AdmissibleActions  # noqa: E402
from hpl.mirror import PROJECT_ROOT  # noqa: E402
from hpl.models import build_tiny_model, stop_token_ids  # noqa: E402
from hpl.policy import ActionLineStop  # noqa: E402
from hpl.prefix_cache import decode  # noqa: E402

OBJECTS = ["apple", "countertop", "shelf", "cabinet", "drawer", "fridge", "microwave", "sinkbasin", "mug"]
ACTIONS = [f"go to {o} {i}" for o in OBJECTS for i in range(1, 6)] + [
    f"take {o} 1 from {p} 2" for o in OBJECTS for p in OBJECTS
]


def tiny_model(texts: list[str], folder: Path):
    """The embedded tiny model (`hpl.models.build_tiny_model`, config's model_specs.tiny) on `texts`."""
    spec = yaml.safe_load((PROJECT_ROOT / "config" / "config.yaml").read_text())["model_specs"]["tiny"]
    records = [{"conversations": [{"from": "human", "value": t}, {"from": "gpt", "value": t}]} for t in texts]
    return build_tiny_model(records, folder, {**spec, "max_positions": 8192})


def milliseconds(run, repeat: int = 1) -> float:
    run()  # warm-up
    started = time.perf_counter()
    for _ in range(repeat):
        run()
    return 1000 * (time.perf_counter() - started) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--prompt", type=int, default=1000, help="prompt tokens per row")
    parser.add_argument("--steps", type=int, default=96, help="decode steps")
    parser.add_argument("--context", type=int, default=4000, help="cached positions for the attention probe")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = random.Random(0)
    texts = [
        " ".join(rng.choice(ACTIONS) for _ in range(args.prompt // 4)) + "\nAction: go to shelf 1\n"
        for _ in range(200)
    ]
    model, tokenizer = tiny_model(texts, Path(tempfile.mkdtemp(prefix="hpl-bench-decode-")))
    model.eval()
    config = model.config
    rows = [
        (None, 0, tokenizer.encode(texts[i], add_special_tokens=False)[: args.prompt])
        for i in range(args.rows)
    ]
    admissible = [rng.sample(ACTIONS, 30) for _ in range(args.rows)]
    stops = stop_token_ids(tokenizer)

    def generate(steps: int, constrained: bool):
        def processors():  # per row, fresh for each call (the constraint keeps each row's state)
            return [
                [AdmissibleActions(tokenizer, [actions], 0, stops, steps)] if constrained else []
                for actions in admissible
            ]

        stop = ActionLineStop(tokenizer, 0)
        return lambda: decode(
            model,
            rows,
            max_new_tokens=steps,
            pad_id=0,
            stop_ids=stops,
            processors=processors(),
            stop_when=stop,
        )

    print(f"{args.rows} rows, {args.prompt}-token prompts, {args.threads} thread(s)")
    for constrained in (False, True):
        prefill = milliseconds(generate(1, constrained))
        full = milliseconds(generate(args.steps, constrained))
        name = "admissible" if constrained else "free"
        print(
            f"decode ({name}): prefill {prefill:.0f} ms, {(full - prefill) / (args.steps - 1):.2f} ms per step"
        )

    from transformers import DynamicCache

    with torch.no_grad():
        cache = DynamicCache(config=config)
        model(
            input_ids=torch.zeros(args.rows, args.prompt, dtype=torch.long),
            past_key_values=cache,
            use_cache=True,
        )
        width = [args.prompt]

        def step():
            width[0] += 1
            mask = torch.ones(args.rows, width[0], dtype=torch.long)
            ids = torch.zeros(args.rows, 1, dtype=torch.long)
            model(input_ids=ids, attention_mask=mask, past_key_values=cache, use_cache=True, logits_to_keep=1)

        print(f"bare transformers forward with DynamicCache: {milliseconds(step, 50):.2f} ms per step")

    heads, dim = config.num_attention_heads, config.hidden_size // config.num_attention_heads
    q = torch.randn(args.rows, heads, 1, dim)
    k, v = (torch.randn(args.rows, heads, args.context, dim) for _ in range(2))
    mask = torch.ones(args.rows, 1, 1, args.context, dtype=torch.bool)
    mask[..., : args.context // 10] = False
    attention = torch.nn.functional.scaled_dot_product_attention
    plain = milliseconds(lambda: attention(q, k, v), 50)
    masked = milliseconds(lambda: attention(q, k, v, attn_mask=mask), 50)
    megabytes = 2 * k.numel() * k.element_size() / 1e6
    print(
        f"attention, {args.context} cached positions: {plain:.2f} ms (no mask), {masked:.2f} ms (padding mask) "
        f"per layer per step, {megabytes:.0f} MB of keys and values = {megabytes / plain:.1f} GB/s"
    )


if __name__ == "__main__":
    main()
