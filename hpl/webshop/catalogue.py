"""The WebShop product catalogue: the mirror's JSON files parsed into `Product` records.

The mirror's `webshop/` folder holds WebShop's small (1000-product) development set:

- `items_shuffle_1000.json`: the products as scraped (name, pricing, customization_options, ...);
- `items_ins_v2_1000.json`: per-asin attribute annotations and, for 415 products, a synthetic instruction;
- `items_human_ins.json`: human instructions for the 13 products of this set that have them.

Normalisation follows WebShop's `load_products` so that pages and rewards see what the original sees:
option names and values are lowercased and "/" in a value becomes " | "; a price string such as "$19.99$27.99"
becomes the range [19.99, 27.99] (shown as "$19.99 to $27.99"); products without annotations get the single
attribute "DUMMY_ATTR". Parsing takes about a second, so each folder is parsed once per process.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from hpl.envs.base import BenchmarkError
from hpl.mirror import ENV_VAR

PRODUCTS_FILE = "items_shuffle_1000.json"
ATTRIBUTES_FILE = "items_ins_v2_1000.json"
HUMAN_INSTRUCTIONS_FILE = "items_human_ins.json"
REQUIRED_FILES = (PRODUCTS_FILE, ATTRIBUTES_FILE, HUMAN_INSTRUCTIONS_FILE)

#: WebShop shows this price (and its tag) for a product without pricing
DEFAULT_PRICE = 100.0


class CatalogueMissing(BenchmarkError):
    """A catalogue file is not in the mirror folder (the message names the file and the mirror setting)."""


@dataclass(frozen=True)
class Product:
    """One product as the engine needs it (field names follow WebShop's normalised product dict)."""

    asin: str
    title: str
    category: str
    query: str
    product_category: str
    pricing: tuple[float, ...]
    price_tag: str
    description: str
    bullet_points: tuple[str, ...]
    rating: str
    reviews: tuple[dict[str, Any], ...]
    #: option name -> option values, in the catalogue's order (both lowercased)
    options: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: annotated attributes (["DUMMY_ATTR"] when the product has none, as in WebShop)
    attributes: tuple[str, ...] = ()
    #: synthetic instruction of items_ins_v2 (None for products without one)
    instruction_text: str | None = None
    instruction_attributes: tuple[str, ...] = ()
    human_instructions: tuple[dict[str, Any], ...] = ()

    def option_text(self) -> str:
        """The options as WebShop's search index writes them: "size: s, m, and color: red"."""
        return ", and ".join(f"{name}: {', '.join(values)}" for name, values in self.options.items())


@dataclass(frozen=True)
class Catalogue:
    """All products of one mirror folder, in file order, with lookup by asin."""

    folder: Path
    products: tuple[Product, ...]
    by_asin: dict[str, Product]

    def __len__(self) -> int:
        return len(self.products)

    def __getitem__(self, asin: str) -> Product:
        return self.by_asin[asin]

    def __contains__(self, asin: object) -> bool:
        return asin in self.by_asin


def parse_pricing(pricing: str | None) -> tuple[tuple[float, ...], str]:
    """Prices and the displayed tag of a pricing string ("$12.99", "$16.99$26.99", "$1,299.00", "")."""
    if not pricing:
        return (DEFAULT_PRICE,), f"${DEFAULT_PRICE}"
    prices = [float(Decimal(re.sub(r"[^\d.]", "", part))) for part in pricing.split("$")[1:]]
    if len(prices) == 1:
        return (prices[0],), f"${prices[0]}"
    return (prices[0], prices[1]), f"${prices[0]} to ${prices[1]}"


def parse_options(customization_options: Any) -> dict[str, tuple[str, ...]]:
    """Option name -> values, lowercased; "/" becomes " | " (WebShop does it so values read as one token)."""
    options: dict[str, tuple[str, ...]] = {}
    if not isinstance(customization_options, dict):
        return options
    for name, contents in customization_options.items():
        if not contents:
            continue
        values = tuple(item["value"].strip().replace("/", " | ").lower() for item in contents)
        options[name.lower()] = values
    return options


def _rating(raw: Any) -> str:
    """The rating shown on an item page: the catalogue's average rating, "N.A." where it has none."""
    return "N.A." if raw in ("", None) else str(raw)


def _product(raw: dict[str, Any], annotation: dict[str, Any], human: list[dict[str, Any]]) -> Product:
    pricing, price_tag = parse_pricing(raw.get("pricing"))
    bullets = raw.get("small_description") or []
    if not isinstance(bullets, list):
        bullets = [bullets]
    attributes = annotation.get("attributes") if "attributes" in annotation else ["DUMMY_ATTR"]
    return Product(
        asin=raw["asin"],
        title=raw.get("name") or "N.A.",
        category=raw.get("category", ""),
        query=(raw.get("query") or "").lower().strip(),
        product_category=raw.get("product_category") or "",
        pricing=pricing,
        price_tag=price_tag,
        description=raw.get("full_description") or "",
        bullet_points=tuple(str(b) for b in bullets),
        rating=_rating(raw.get("average_rating")),
        reviews=tuple(raw.get("reviews") or ()),
        options=parse_options(raw.get("customization_options")),
        attributes=tuple(attributes),
        instruction_text=annotation.get("instruction"),
        instruction_attributes=tuple(annotation.get("instruction_attributes") or ()),
        human_instructions=tuple(human),
    )


def _read(folder: Path, name: str) -> Any:
    path = folder / name
    if not path.is_file():
        raise CatalogueMissing(
            f"WebShop catalogue file missing: {path}. Point the data mirror at a folder whose webshop/ "
            f"holds {', '.join(REQUIRED_FILES)} (config key `data_mirror`, or the environment variable "
            f"{ENV_VAR}, which overrides it)."
        )
    with open(path) as handle:
        return json.load(handle)


@functools.lru_cache(maxsize=4)
def _load(folder: str) -> Catalogue:
    root = Path(folder)
    raw_products = _read(root, PRODUCTS_FILE)
    annotations = _read(root, ATTRIBUTES_FILE)
    human = _read(root, HUMAN_INSTRUCTIONS_FILE)
    products: list[Product] = []
    seen: set[str] = set()
    for raw in raw_products:
        asin = raw.get("asin", "")
        # WebShop skips malformed and duplicate asins
        if not asin or asin == "nan" or len(asin) > 10 or asin in seen:
            continue
        seen.add(asin)
        products.append(_product(raw, annotations.get(asin, {}), human.get(asin, [])))
    return Catalogue(root, tuple(products), {p.asin: p for p in products})


def load_catalogue(data_dir: str | Path) -> Catalogue:
    """The catalogue of a WebShop mirror folder (parsed once per process and folder)."""
    return _load(str(Path(data_dir).expanduser().resolve()))
