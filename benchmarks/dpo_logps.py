"""What a DPO training did to its own pairs: the chosen and rejected sides' log-probabilities under pi_ref
and under the trained model (issue 16: does DPO lower the chosen side along with the rejected one?).

Prints, over the pairs of the given levels, the mean summed log-probability of each side under both models,
the mean change, and how many pairs' chosen side lost likelihood. Uses the pipeline's own encoding
(hpl.dpo: the shared context rule, loss tokens on the agent turns only).

    python benchmarks/dpo_logps.py --ref results/webshop/tiny/train/sft/seed0 \\
        --model results/webshop/tiny/train/eto/seed0 --pairs traj=results/webshop/tiny/pairs/traj.jsonl
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hpl.chat import IGNORE_INDEX  # noqa: E402
from hpl.dpo import load_examples, precompute_reference, reference_rule  # noqa: E402
from hpl.io import read_jsonl  # noqa: E402
from hpl.models import load_model  # noqa: E402


def side_logps(model, examples, pad_id: int) -> tuple[list[float], list[float]]:
    """(chosen, rejected) summed log-probs per pair under one model: the DPO job's own reference pass."""
    precompute_reference(model, examples, pad_id, batch_size=4)
    return [e.ref_chosen for e in examples], [e.ref_rejected for e in examples]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ref", required=True, help="pi_ref (the SFT model the training started from)")
    parser.add_argument("--model", required=True, help="the DPO-trained model")
    parser.add_argument("--pairs", nargs="+", required=True, help="level=path of a pairs jsonl")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    pairs = {spec.split("=", 1)[0]: read_jsonl(spec.split("=", 1)[1]) for spec in args.pairs}
    # encoded once, with pi_ref's tokenizer and window (the trained model keeps both: hpl.dpo.train_dpo)
    ref_model, tokenizer = load_model(args.ref)
    examples = load_examples(tokenizer, pairs, reference_rule(args.ref, {}).window)
    tokens = [sum(t != IGNORE_INDEX for w in e.chosen for t in w.labels) for e in examples]
    ref_c, ref_r = side_logps(ref_model, examples, tokenizer.pad_token_id)
    new_c, new_r = side_logps(load_model(args.model)[0], examples, tokenizer.pad_token_id)
    mean = statistics.mean
    n = len(ref_c)
    print(f"{n} pairs, {mean(tokens):.0f} chosen label tokens on average")
    print(f"{'':10s} {'pi_ref':>10s} {'trained':>10s} {'change':>10s}")
    for side, ref, new in (("chosen", ref_c, new_c), ("rejected", ref_r, new_r)):
        print(
            f"{side:10s} {mean(ref):10.2f} {mean(new):10.2f} {mean(b - a for a, b in zip(ref, new)):+10.2f}"
        )
    margin = [(nc - rc) - (nr - rr) for rc, rr, nc, nr in zip(ref_c, ref_r, new_c, new_r)]
    print(f"implicit reward margin (chosen change - rejected change): {mean(margin):+.2f}")
    print(f"pairs whose chosen side lost likelihood: {sum(b < a for a, b in zip(ref_c, new_c))} of {n}")


if __name__ == "__main__":
    main()
