"""The WebShop engine: catalogue, synthetic goals, BM25 search, pages and WebShop's purchase reward.

`hpl.webshop.env.WebShopEnv` puts it behind the `Environment` protocol; `hpl.webshop.expert` is the
scripted oracle that produces expert trajectories. See docs/webshop.md.
"""

from hpl.webshop.catalogue import Catalogue, CatalogueMissing, Product, load_catalogue
from hpl.webshop.goals import Goal, GoalSet, build_goals
from hpl.webshop.reward import score_purchase
from hpl.webshop.search import SearchEngine, analyze, search_engine

__all__ = [
    "Catalogue",
    "CatalogueMissing",
    "Goal",
    "GoalSet",
    "Product",
    "SearchEngine",
    "analyze",
    "build_goals",
    "load_catalogue",
    "score_purchase",
    "search_engine",
]
