"""WebShop's purchase reward (Yao et al. 2022, eq. 1; `get_reward` in the original's engine/goal.py).

    reward = r_type * (matched attributes + matched options + [price <= bound])
                    / (goal attributes + goal options + 1)

This follows the released WebShop (princeton-nlp/WebShop master, `engine/goal.py`), the code that the text
environment of WebShop, ETO and IPR runs:

- Attributes: a goal attribute matches when some annotated product attribute has a fuzzy token-set
  similarity > 85 with it, or when it appears verbatim in the title, the bullet points or the description.
- Options (`get_option_reward(list(options.values()), goal['goal_options'].items())`): each *goal* option
  counts as hit when some bought option value scores > 85 against it. Both sides go through
  `normalize_color`, whose `colour in x` is a substring test on the bought value (a string) but a
  membership test on the goal option, a `(name, value)` pair: so a bought "l.brown2060" becomes "brown",
  while the goal pair stays a pair (unless its value is exactly a base colour) and is compared as the text
  of the pair, "('color', 'l.brown2060')". Buying the target with the goal's options therefore does not
  always score 1.0, and a bought "large" hits a goal "x-large" (its tokens are a subset of the pair's).
  No exact rule for sizes and no look-up in the product text: those belong to WebShop's unmerged "finer
  matching for options" change, which the released environments do not run.
- Type: 1.0 when the bought product shares the goal's search query, or >= 2 levels of its category path,
  or more than 20% of the goal title's nouns; 0.5 when none of these hold; 0.1 when less than 10% of the
  nouns match; 0.0 when none does.

Fuzzy similarity reproduces thefuzz's `token_set_ratio` (what the original calls): both arguments are
turned into text with `str` (a pair becomes its repr), cut to ASCII, lowercased, non-alphanumerics become
spaces, and the rapidfuzz score is rounded to an integer.

Deviation: the original finds nouns with spaCy's `en_core_web_lg` tagger, which cannot be installed
offline. We take a title's "nouns" to be its alphabetic words of two or more letters that are not English
function words. It over-counts adjectives, so title overlaps of *different* products can differ slightly
from the original; a purchase of the target product scores as in the original. docs/webshop.md gives the
measured size of each deviation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from rapidfuzz import fuzz
from rapidfuzz.utils import default_process

from hpl.webshop.catalogue import Catalogue, Product, load_catalogue
from hpl.webshop.goals import Goal

FUZZY_THRESHOLD = 85

#: WebShop's base colours (engine/normalize.py), in its order: the first one found in a value wins
COLOR_SET = (
    "alabaster apricot aqua ash asphalt azure banana beige black blue blush bordeaux bronze brown burgundy "
    "camel camo caramel champagne charcoal cheetah chestnut chocolate christmas coffee cognac copper coral "
    "cranberry cream crystal dark denim eggplant elephant espresso fuchsia gold granite grape graphite grass "
    "gray green grey heather indigo ivory ivy khaki lavender lemon leopard light lilac lime magenta maroon "
    "mauve merlot midnight mint mocha multicolor mushroom mustard natural navy nude olive orange peach pewter "
    "pink plum purple rainbow red rose royal rust sand sapphire seashell silver skull slate steel stone "
    "stonewash sunflower tan taupe teal tiger turquoise violet walnut wheat white wine yellow"
).split()

_FUNCTION_WORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have having
    he her here hers him his how i if in into is it its itself just me more most my no nor not now of off on
    once only or other our ours out over own per same she should so some such than that the their theirs them
    then there these they this those through to too under until up upon very via was we were what when where
    which while who whom why will with within without would you your yours""".split()
)
_WORD = re.compile(r"[a-z]+")
_LATIN1_HIGH = {i: None for i in range(128, 256)}


def fuzzy_score(a: Any, b: Any) -> int:
    """thefuzz's token_set_ratio with its default processing (force_ascii, full_process), as an int."""
    a = default_process(str(a).translate(_LATIN1_HIGH))
    b = default_process(str(b).translate(_LATIN1_HIGH))
    return int(round(fuzz.token_set_ratio(a, b)))


def normalize_color(value: str | tuple[str, ...]) -> str | tuple[str, ...]:
    """The first base colour `in` `value`, else `value` itself.

    As the original, on a string this is a substring test; on a (name, value) pair a membership test.
    """
    for color in COLOR_SET:
        if color in value:
            return color
    return value


def title_nouns(title: str) -> list[str]:
    """A title's noun-like words (see the module docstring: stands in for spaCy's NOUN/PROPN tags)."""
    return [w for w in _WORD.findall(title.lower()) if len(w) > 1 and w not in _FUNCTION_WORDS]


def _in_text(needle: str, product: Product) -> bool:
    return (
        needle in product.title.lower()
        or needle in " ".join(product.bullet_points).lower()
        or needle in product.description.lower()
    )


def type_match(product: Product, goal: Goal) -> dict[str, Any]:
    """The type factor r_type and what it was computed from."""
    query_match = product.query == goal.query
    bought_path = {level.strip() for level in product.product_category.split("›")}
    goal_path = {level.strip() for level in goal.product_category.split("›")}
    category_match = len(bought_path & goal_path) >= 2
    desired = title_nouns(goal.name)
    bought = title_nouns(product.title)
    title_score = len(set(bought) & set(desired)) / len(desired) if desired else 0.2
    r_type = 1.0 if (query_match or category_match or title_score > 0.2) else 0.5
    if title_score < 0.1:
        r_type = 0.1
    if title_score == 0.0:
        r_type = 0.0
    return dict(
        r_type=r_type, query_match=query_match, category_match=category_match, title_score=title_score
    )


def attribute_matches(product: Product, goal: Goal) -> int:
    """How many goal attributes the product has (fuzzy against annotations, else verbatim in its text)."""
    count = 0
    for wanted in goal.attributes:
        fuzzy = any(fuzzy_score(have, wanted) > FUZZY_THRESHOLD for have in product.attributes)
        if fuzzy or _in_text(wanted, product):
            count += 1
    return count


def option_reward(bought_values: Sequence[str], goal_options: Sequence[Any]) -> tuple[float | None, int]:
    """The released `get_option_reward`: (share of goal options hit, number hit); None without goal options.

    `goal_options` are what `get_reward` passes: (name, value) pairs for a goal whose options are a dict
    (synthetic goals), plain values otherwise. One bought value may hit several goal options.
    """
    bought = [normalize_color(value) for value in bought_values]
    wanted = [normalize_color(option) for option in goal_options]
    hits = sum(any(fuzzy_score(b, w) > FUZZY_THRESHOLD for b in bought) for w in wanted)
    return (hits / len(wanted) if wanted else None), hits


def option_matches(goal: Goal, selected_options: Mapping[str, str]) -> int:
    """How many of the goal's options the selected options hit (see the module docstring)."""
    return option_reward(list(selected_options.values()), list(goal.goal_options.items()))[1]


def score_purchase(
    goal: Goal,
    asin: str,
    selected_options: Mapping[str, str],
    price: float,
    catalogue: Catalogue | str | None = None,
) -> dict[str, Any]:
    """Reward of buying `asin` with `selected_options` (option name -> value) at `price` for `goal`.

    `catalogue` is the catalogue (or its folder) the goal was built from (default: the goal's own). Returns the reward and its parts:
    r_type, r_attribute, r_option (None for a goal without options), r_price, the match counts and the
    type-match details, so that every term can be compared with the original's `get_reward(verbose=True)`.
    """
    if catalogue is None:
        if not goal.source:
            raise ValueError("score_purchase: the goal names no catalogue; pass `catalogue`")
        catalogue = goal.source
    if not isinstance(catalogue, Catalogue):
        catalogue = load_catalogue(catalogue)
    product = catalogue[asin]
    n_attributes = len(goal.attributes)
    n_options = len(goal.goal_options)
    attributes = attribute_matches(product, goal)
    options = option_matches(goal, selected_options)
    price_ok = price <= goal.price_upper
    kind = type_match(product, goal)
    reward = kind["r_type"] * (attributes + options + int(price_ok)) / (n_attributes + n_options + 1)
    return dict(
        reward=reward,
        r_type=kind["r_type"],
        r_attribute=attributes / n_attributes if n_attributes else None,
        r_option=options / n_options if n_options else None,
        r_price=float(price_ok),
        attribute_matches=attributes,
        option_matches=options,
        n_attributes=n_attributes,
        n_options=n_options,
        query_match=kind["query_match"],
        category_match=kind["category_match"],
        title_score=kind["title_score"],
    )
