"""The shop's pages in WebShop's text observation mode, and how actions move between them.

A page is a list of visible text elements joined by " [SEP] " (WebShop's "simple" text mode). Pages and
buttons follow the original site:

    search   WebShop [SEP] Instruction: [SEP] <goal> [SEP] Search
    results  Instruction: [SEP] <goal> [SEP] Back to Search [SEP] Page 1 (Total results: 50) [SEP] Next >
             [SEP] <ASIN> [SEP] <title> [SEP] <price> ...            (10 products a page, "< Prev" after page 1)
    item     Instruction: [SEP] <goal> [SEP] Back to Search [SEP] < Prev [SEP] <option name> [SEP] <value> ...
             [SEP] <title> [SEP] Price: <price> [SEP] Rating: <rating> [SEP] Description [SEP] Features
             [SEP] Reviews [SEP] Buy Now
    sub-page Instruction: [SEP] <goal> [SEP] Back to Search [SEP] < Prev [SEP] <description | bullet points |
             reviews>

Actions are `search[query]` (only where the search bar is: the search page) and `click[button]`, with the
button matched case-insensitively against the page's buttons, product asins and option values. "< Prev"
goes from a sub-page to its item page (options kept), from an item page to its results page (options
cleared, as the original re-renders the results) and from results page n to n - 1. An action that cannot be
executed leaves the state as it is and says why ("Invalid action! ...").

The state is an immutable `PageState`, so a snapshot is the state object itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from hpl.webshop.catalogue import Catalogue, Product
from hpl.webshop.goals import Goal
from hpl.webshop.reward import score_purchase
from hpl.webshop.search import SearchEngine

SEP = " [SEP] "
PRODUCTS_PER_PAGE = 10

SEARCH, RESULTS, ITEM, SUB_PAGE, DONE = "search", "results", "item", "sub_page", "done"

BACK_TO_SEARCH = "Back to Search"
NEXT_PAGE = "Next >"
PREV_PAGE = "< Prev"
BUY_NOW = "Buy Now"
SUB_PAGES = ("Description", "Features", "Reviews")

_ACTION = re.compile(r"^\s*([A-Za-z_]+)\s*\[(.*)\]\s*$", re.S)


@dataclass(frozen=True)
class PageState:
    """Where the agent is: the page and everything needed to render it again."""

    page: str = SEARCH
    query: str = ""
    results: tuple[str, ...] = ()
    page_no: int = 1
    asin: str | None = None
    #: selected options as (name, value), one per option name, in the order chosen
    options: tuple[tuple[str, str], ...] = ()
    sub_page: str | None = None
    reward: float = 0.0

    def selected(self) -> dict[str, str]:
        return dict(self.options)


@dataclass(frozen=True)
class Button:
    """A clickable element: its label as shown, what it does, and its argument."""

    label: str
    kind: str  # "back", "next", "prev", "product", "option", "sub_page", "buy"
    arg: Any = None


@dataclass(frozen=True)
class Outcome:
    state: PageState
    observation: str
    reward: float
    done: bool
    invalid: bool
    purchase: dict[str, Any] | None = None


def parse_action(action: str) -> tuple[str, str] | None:
    """(name, argument) of "name[argument]" with balanced brackets, else None."""
    match = _ACTION.match(action or "")
    if match is None:
        return None
    name, arg = match.group(1).lower(), match.group(2)
    depth = 0
    for char in arg:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if depth < 0:
            return None
    return (name, arg) if depth == 0 else None


class Shop:
    """Renders pages and applies actions for one catalogue (stateless: states are passed in and out)."""

    def __init__(self, catalogue: Catalogue, engine: SearchEngine, prices: dict[str, float]) -> None:
        self.catalogue = catalogue
        self.engine = engine
        self.prices = prices

    # --- rendering -------------------------------------------------------------------------------
    def render(self, state: PageState, goal: Goal) -> str:
        if state.page == SEARCH:
            return SEP.join(["WebShop", "Instruction:", goal.instruction_text, "Search"])
        if state.page == DONE:
            return SEP.join(
                ["Thank you for shopping with us!", "Your score (min 0.0, max 1.0)", f"{state.reward:.4g}"]
            )
        header = ["Instruction:", goal.instruction_text, BACK_TO_SEARCH]
        if state.page == RESULTS:
            body = self._results_body(state)
        elif state.page == ITEM:
            body = [PREV_PAGE, *self._item_body(self.catalogue[state.asin])]
        else:
            body = [PREV_PAGE, *self._sub_page_body(self.catalogue[state.asin], state.sub_page)]
        return SEP.join(text for text in (t.strip() for t in header + body) if text)

    def _results_body(self, state: PageState) -> list[str]:
        body = [f"Page {state.page_no} (Total results: {len(state.results)})"]
        body += [b.label for b in self._paging_buttons(state)]
        for asin in self._page_asins(state):
            product = self.catalogue[asin]
            body += [asin, product.title, product.price_tag]
        return body

    @staticmethod
    def _item_body(product: Product) -> list[str]:
        body: list[str] = []
        for name, values in product.options.items():
            body += [name, *values]
        body += [product.title, f"Price: {product.price_tag}", f"Rating: {product.rating}"]
        return body + [*SUB_PAGES, BUY_NOW]

    @staticmethod
    def _sub_page_body(product: Product, sub_page: str | None) -> list[str]:
        if sub_page == "Description":
            return [product.description]
        if sub_page == "Features":
            return list(product.bullet_points)
        texts = []
        for review in product.reviews:
            texts += [str(review.get("title", "")), str(review.get("score", "")), str(review.get("body", ""))]
        return texts

    # --- buttons ---------------------------------------------------------------------------------
    @staticmethod
    def _page_asins(state: PageState) -> tuple[str, ...]:
        start = (state.page_no - 1) * PRODUCTS_PER_PAGE
        return state.results[start : start + PRODUCTS_PER_PAGE]

    @staticmethod
    def _paging_buttons(state: PageState) -> list[Button]:
        buttons = []
        if state.page_no > 1:
            buttons.append(Button(PREV_PAGE, "prev"))
        if state.page_no * PRODUCTS_PER_PAGE < len(state.results):
            buttons.append(Button(NEXT_PAGE, "next"))
        return buttons

    def buttons(self, state: PageState) -> list[Button]:
        """The clickable elements of the page, in page order."""
        if state.page in (SEARCH, DONE):
            return []
        buttons = [Button(BACK_TO_SEARCH, "back")]
        if state.page == RESULTS:
            buttons += self._paging_buttons(state)
            buttons += [Button(asin, "product", asin) for asin in self._page_asins(state)]
        elif state.page == ITEM:
            buttons.append(Button(PREV_PAGE, "prev"))
            for name, values in self.catalogue[state.asin].options.items():
                buttons += [Button(value, "option", (name, value)) for value in values]
            buttons += [Button(label, "sub_page", label) for label in SUB_PAGES]
            buttons.append(Button(BUY_NOW, "buy"))
        else:
            buttons.append(Button(PREV_PAGE, "prev"))
        return buttons

    def clickables(self, state: PageState) -> dict[str, Button]:
        """Lowercased label -> button. A label shown twice (an option value under two names) maps to the
        later one, as in the original's text environment."""
        return {button.label.lower(): button for button in self.buttons(state)}

    # --- transitions -----------------------------------------------------------------------------
    def start(self) -> PageState:
        return PageState()

    def step(self, state: PageState, goal: Goal, action: str) -> Outcome:
        """Apply one action text; an inexecutable one leaves the state unchanged and says why."""
        if state.page == DONE:
            return self._invalid(state, "The episode is over: you have already bought a product.")
        parsed = parse_action(action)
        if parsed is None:
            return self._invalid(state, "Use search[query] or click[button], with balanced brackets.")
        name, arg = parsed
        if name == "search":
            return self._search(state, goal, arg)
        if name == "click":
            return self._click(state, goal, arg)
        return self._invalid(state, f"Unknown action {name!r}: use search[query] or click[button].")

    def _invalid(self, state: PageState, reason: str) -> Outcome:
        return Outcome(state, f"Invalid action! {reason}", state.reward, state.page == DONE, True)

    def _ok(self, state: PageState, goal: Goal) -> Outcome:
        return Outcome(state, self.render(state, goal), 0.0, False, False)

    def _search(self, state: PageState, goal: Goal, query: str) -> Outcome:
        if state.page != SEARCH:
            return self._invalid(state, "There is no search bar on this page; click[Back to Search] first.")
        query = query.strip().lower()
        if not query:
            return self._invalid(state, "The search query is empty.")
        results = self.engine.search(query)
        return self._ok(PageState(RESULTS, query=query, results=results), goal)

    def _click(self, state: PageState, goal: Goal, label: str) -> Outcome:
        button = self.clickables(state).get(label.strip().lower())
        if button is None:
            if state.page == SEARCH:
                return self._invalid(state, "Only search[query] is possible on the search page.")
            return self._invalid(state, f'There is no "{label.strip()}" button on this page.')
        if button.kind == "buy":
            return self._buy(state, goal)
        return self._ok(self._follow(state, button), goal)

    def _follow(self, state: PageState, button: Button) -> PageState:
        """The state a (non-purchase) click leads to."""
        if button.kind == "back":
            return PageState()
        if button.kind == "next":
            return replace(state, page_no=state.page_no + 1)
        if button.kind == "product":
            return replace(state, page=ITEM, asin=button.arg, options=())
        if button.kind == "option":
            name, value = button.arg
            options = tuple((n, v) for n, v in state.options if n != name) + ((name, value),)
            return replace(state, options=options)
        if button.kind == "sub_page":
            return replace(state, page=SUB_PAGE, sub_page=button.arg)
        # "< Prev": sub-page -> item page; item page -> its results page; results page n -> n - 1
        if state.page == SUB_PAGE:
            return replace(state, page=ITEM, sub_page=None)
        if state.page == ITEM:
            return replace(state, page=RESULTS, asin=None, options=())
        return replace(state, page_no=state.page_no - 1)

    def _buy(self, state: PageState, goal: Goal) -> Outcome:
        purchase = score_purchase(goal, state.asin, state.selected(), self.prices[state.asin], self.catalogue)
        purchase = {
            "asin": state.asin,
            "options": state.selected(),
            "price": self.prices[state.asin],
            **purchase,
        }
        done = replace(state, page=DONE, reward=purchase["reward"])
        return Outcome(done, self.render(done, goal), done.reward, True, False, purchase)
