"""Synthetic WebShop goals and the fixed train/test split.

WebShop's small setting has no human goals for most products, so it makes goals from annotations
(`get_synthetic_goals` in the original). We follow it:

- Every product with an annotated instruction gives one goal per combination of its option values (option
  names sorted), e.g. "Find me ... with color: black, and size: large".
- Each product gets a purchase price: its single price, or a uniform draw inside its price range.
- The price bound is the larger of two values drawn from the first four multiples of $10 above the price
  (", and price lower than 40.00 dollars"); when fewer than two such multiples exist (price >= $980) the
  goal has no bound (1,000,000) and no price text.
- Goals are shuffled and the split is positional: the first `num_test_goals` (200, the paper's WebShop test
  size) are the test goals, the rest are training goals. As in WebShop, the split is over goals, not
  products: a product may have some option combinations in test and others in train.

Everything random comes from one `random.Random(seed)` (prices, then bounds, then the shuffle), so goals
are a pure function of the catalogue and the seed. The default seed is WebShop's goal-shuffle seed, 233.
"""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from dataclasses import dataclass, field

from hpl.webshop.catalogue import Catalogue, Product

DEFAULT_SEED = 233
DEFAULT_NUM_TEST_GOALS = 200
#: WebShop's candidate price bounds: $10, $20, ..., $990
PRICE_BOUNDS = tuple(10.0 * i for i in range(1, 100))
NO_PRICE_BOUND = 1_000_000.0


@dataclass(frozen=True)
class Goal:
    """One shopping goal: what to buy (target asin), which attributes/options, and the price bound."""

    index: int
    asin: str
    instruction_text: str
    attributes: tuple[str, ...]
    #: option name -> value the goal asks for (names sorted, as WebShop builds them)
    goal_options: dict[str, str]
    price_upper: float
    #: the target's type information, used by the reward's type match
    name: str
    query: str
    category: str
    product_category: str
    #: WebShop's sampling weight: mean inverse frequency of the goal's attributes
    weight: float = 1.0
    #: the catalogue folder the goal was built from (lets `score_purchase` find the products)
    source: str = field(default="", repr=False, compare=False)

    @property
    def task_id(self) -> str:
        return task_id_of(self.index)


def task_id_of(index: int) -> str:
    return f"ws-{index}"


def index_of(task_id: str) -> int:
    """The goal index of a task id "ws-<index>" (ValueError otherwise)."""
    prefix, _, number = task_id.partition("-")
    if prefix != "ws" or not number.isdigit():
        raise ValueError(f"not a WebShop task id: {task_id!r} (expected 'ws-<index>')")
    return int(number)


def purchase_prices(catalogue: Catalogue, rng: random.Random) -> dict[str, float]:
    """The price each product is bought at: a range is resolved once, uniformly (WebShop's rule)."""
    prices = {}
    for product in catalogue.products:
        low, *high = product.pricing
        prices[product.asin] = rng.uniform(low, high[0]) if high else low
    return prices


def price_bound(price: float, rng: random.Random) -> tuple[float, str]:
    """The goal's price bound and its instruction text for a product bought at `price`."""
    candidates = [bound for bound in PRICE_BOUNDS if bound > price][:4]
    if len(candidates) < 2:
        return NO_PRICE_BOUND, ""
    _, upper = sorted(rng.sample(candidates, 2))
    return upper, f", and price lower than {upper:.2f} dollars"


def option_combinations(product: Product) -> list[dict[str, str]]:
    """Every choice of one value per option (a single empty choice for a product without options)."""
    names = sorted(product.options)
    return [
        dict(zip(names, values, strict=True))
        for values in itertools.product(*(product.options[n] for n in names))
    ]


def option_text(goal_options: dict[str, str]) -> str:
    text = ", and ".join(f"{name}: {value}" for name, value in goal_options.items())
    return f" with {text}" if text else ""


def _product_goals(product: Product, price: float, rng: random.Random) -> list[dict]:
    upper, price_text = price_bound(price, rng)
    return [
        dict(
            asin=product.asin,
            instruction_text=f"{product.instruction_text}{option_text(options)}{price_text}",
            attributes=product.instruction_attributes,
            goal_options=options,
            price_upper=upper,
            name=product.title,
            query=product.query,
            category=product.category,
            product_category=product.product_category,
        )
        for options in option_combinations(product)
    ]


def _weights(raw_goals: list[dict]) -> list[float]:
    counts: dict[str, int] = defaultdict(int)
    for goal in raw_goals:
        for attribute in goal["attributes"]:
            counts[attribute] += 1
    return [sum(1.0 / counts[a] for a in g["attributes"]) / len(g["attributes"]) for g in raw_goals]


@dataclass(frozen=True)
class GoalSet:
    """The goals of one catalogue and seed, with prices and the split."""

    goals: tuple[Goal, ...]
    prices: dict[str, float]
    num_test_goals: int
    seed: int

    def split(self, name: str) -> list[Goal]:
        if name == "test":
            return list(self.goals[: self.num_test_goals])
        if name == "train":
            return list(self.goals[self.num_test_goals :])
        if name == "all":
            return list(self.goals)
        raise KeyError(f"unknown WebShop split {name!r}; known: train, test, all")

    def task_ids(self, split: str) -> list[str]:
        return [goal.task_id for goal in self.split(split)]

    def goal(self, task_id: str) -> Goal:
        index = index_of(task_id)
        if index >= len(self.goals):
            raise KeyError(f"no WebShop goal {task_id!r}: there are {len(self.goals)} goals")
        return self.goals[index]


def build_goals(
    catalogue: Catalogue, seed: int = DEFAULT_SEED, num_test_goals: int = DEFAULT_NUM_TEST_GOALS
) -> GoalSet:
    """All synthetic goals of a catalogue, shuffled with `seed`; the first `num_test_goals` are the test split."""
    rng = random.Random(seed)
    prices = purchase_prices(catalogue, rng)
    raw: list[dict] = []
    for product in catalogue.products:
        if product.instruction_text and product.instruction_attributes:
            raw.extend(_product_goals(product, prices[product.asin], rng))
    for goal, weight in zip(raw, _weights(raw), strict=True):
        goal["weight"] = weight
    rng.shuffle(raw)
    if not 0 <= num_test_goals <= len(raw):
        raise ValueError(f"num_test_goals={num_test_goals}: the catalogue has {len(raw)} goals")
    goals = tuple(Goal(index=i, source=str(catalogue.folder), **g) for i, g in enumerate(raw))
    return GoalSet(goals, prices, num_test_goals, seed)
