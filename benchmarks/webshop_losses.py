"""Where WebShop reward is lost: the search, the product chosen, the options, the purchase.

For evaluation episodes (the `results/webshop/.../eval/.../test.jsonl` of a run), each stage's ceiling is
scored with WebShop's own reward (`hpl.webshop.score_purchase`), the product's goal options counted as
selected:
- query copied: the fraction of the instruction the agent's query repeats before it first differs (the
  oracle searches with the lowercased instruction);
- best on page 1: the best product on the first result page of the agent's query, and of the instruction's
  own words; mean on page 1: a product picked at random from it;
- clicked: the product the agent opened; final: the reward it got (options as chosen, or 0 without a buy).

    python benchmarks/webshop_losses.py results/webshop/tiny/eval/sft/seed0/test.jsonl [more files]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hpl.io import read_jsonl  # noqa: E402
from hpl.mirror import benchmark_mirror  # noqa: E402
from hpl.webshop.env import WebShopEnv  # noqa: E402
from hpl.webshop.expert import _offered_goal_options  # noqa: E402
from hpl.webshop.pages import PRODUCTS_PER_PAGE  # noqa: E402
from hpl.webshop.reward import score_purchase  # noqa: E402

ASIN = re.compile(r"B[0-9A-Z]{9}")


def copied(query: str, instruction: str) -> float:
    """Fraction of `instruction` that `query` repeats from its start."""
    n = 0
    while n < min(len(query), len(instruction)) and query[n] == instruction[n]:
        n += 1
    return n / len(instruction)


def episode_losses(env: WebShopEnv, episode: dict) -> dict:
    env.reset(episode["task_id"])
    goal = env.goal

    def value(asin: str) -> float:
        options = _offered_goal_options(env, asin)
        return score_purchase(goal, asin, options, env.goals.prices[asin], env.catalogue)["reward"]

    actions = [a for a in episode["actions"] if a]
    query = next((a[len("search[") : -1] for a in actions if a.startswith("search[")), "")
    page = env.engine.search(query)[:PRODUCTS_PER_PAGE] if query else ()
    own = env.engine.search(goal.instruction_text.lower())[:PRODUCTS_PER_PAGE]
    clicked = [a[len("click[") : -1] for a in actions if a.startswith("click[")]
    opened = next((c for c in clicked if ASIN.fullmatch(c)), None)
    return {
        "copied": copied(query, goal.instruction_text.lower()),
        "best": max(map(value, page), default=0.0),
        "best_own": max(map(value, own), default=0.0),
        "mean_page": statistics.fmean(map(value, page)) if page else 0.0,
        "clicked": value(opened) if opened else 0.0,
        "bought": float("Buy Now" in clicked),
        "reward": float(episode["reward"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("episodes", nargs="+", help="evaluation JSONL files of WebShop")
    parser.add_argument("--mirror", default=None, help="data mirror (default: $HPL_DATA_MIRROR)")
    args = parser.parse_args()
    env = WebShopEnv(benchmark_mirror(args.mirror, "webshop"))
    print(
        "| episodes | query copied (median) | best on page 1 | ... with the instruction's words "
        "| mean on page 1 | clicked | bought | final reward | file |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for path in args.episodes:
        rows = [episode_losses(env, e) for e in read_jsonl(path)]
        mean = {k: statistics.fmean(r[k] for r in rows) for k in rows[0]}
        median_copy = statistics.median(r["copied"] for r in rows)
        print(
            f"| {len(rows)} | {median_copy:.0%} | {mean['best']:.3f} | {mean['best_own']:.3f} "
            f"| {mean['mean_page']:.3f} | {mean['clicked']:.3f} | {mean['bought']:.0%} | {mean['reward']:.3f} "
            f"| {path} |"
        )


if __name__ == "__main__":
    main()
