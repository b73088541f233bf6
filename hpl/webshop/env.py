"""WebShop (Yao et al. 2022) as an `Environment`: a pure-Python shop over the 1000-product catalogue.

    env = make_env("webshop", data_dir=mirror / "webshop")
    obs, meta = env.reset(env.task_ids("test")[0])   # "WebShop [SEP] Instruction: [SEP] ... [SEP] Search"
    env.step("search[long clip-in hair extension]")
    env.step("click[B09C337K8S]"); env.step("click[Buy Now]")   # reward at purchase, done

The engine lives in `hpl.webshop` (catalogue, goals, search, reward, pages); docs/webshop.md says how it
follows the original and where it differs. The whole state is an immutable `PageState`, so snapshots are
O(1) and `fast_restore` is True.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpl.admissible import FreeArgument
from hpl.envs.base import BenchmarkError, Environment, StepResult
from hpl.webshop.catalogue import Catalogue, load_catalogue
from hpl.webshop.goals import DEFAULT_NUM_TEST_GOALS, DEFAULT_SEED, Goal, GoalSet, build_goals
from hpl.webshop.lexicon import CLOSE, instruction_words
from hpl.webshop.pages import DONE, SEARCH, PageState, Shop
from hpl.webshop.search import SearchEngine, search_engine

INSTRUCTION = """You are web shopping.
I will give you instructions about what to do.
You have to follow the instructions.
Every round I will give you an observation of the current web page; you have to respond with an action based on the observation and the instruction.
You can use search action if search is available (on the search page).
You can click one of the buttons shown on the page: a product's ID, an option value, or one of "Back to Search", "Next >", "< Prev", "Description", "Features", "Reviews", "Buy Now".
An action should be of one of the following structures:
search[keywords]
click[value]
If the action is not valid, nothing happens and you are told why.
Keywords in search are up to you, but the value in click must be a button on the current page.
Remember that your keywords in search should be carefully designed.
The episode ends when you click Buy Now; you have at most 10 actions.

Your response should use the following format:

Thought: I think ...
Action: click[something]"""
# what a search query may say under admissible decoding: anything, or only the instruction's words
SEARCH_WORDS = ("free", "instruction")


@dataclass(frozen=True)
class WebShopSnapshot:
    """The full state of an episode: task, actions so far and the page state (all immutable)."""

    task_id: str
    actions: tuple[str, ...]
    state: PageState


class WebShopEnv(Environment):
    """WebShop in text mode with synthetic goals; splits "train" and "test" (and "all")."""

    name = "webshop"

    max_turns = 10
    fast_restore = True
    # as ETO/IPR's WebShopEnv prints them: "Observation:\n<page>", and its answer to a reply without "Action: "
    observation_prefix = "Observation:\n"
    no_action_turn = "Observation: Invalid format. The input must contains 'Action: '"

    def __init__(
        self,
        data_dir: str | Path,
        seed: int = DEFAULT_SEED,
        num_test_goals: int = DEFAULT_NUM_TEST_GOALS,
        max_turns: int = 10,
        search_words: str = "free",
    ) -> None:
        super().__init__()
        if search_words not in SEARCH_WORDS:
            raise ValueError(
                f"webshop.search_words: {search_words!r} is not one of {', '.join(SEARCH_WORDS)}"
            )
        self.max_turns, self.search_words = max_turns, search_words
        # how admissible decoding treats the query, for table1's Actions column
        self.admissible_variant = "" if search_words == "free" else "instruction-word search"
        self.catalogue: Catalogue = load_catalogue(data_dir)
        self.goals: GoalSet = build_goals(self.catalogue, seed=seed, num_test_goals=num_test_goals)
        self.engine: SearchEngine = search_engine(self.catalogue)
        self.shop = Shop(self.catalogue, self.engine, self.goals.prices)
        self._goal: Goal | None = None
        self._state = PageState()
        self.last_purchase: dict[str, Any] | None = None

    # --- protocol ---------------------------------------------------------------------------------
    def task_ids(self, split: str) -> list[str]:
        try:
            return self.goals.task_ids(split)
        except KeyError as err:
            raise BenchmarkError(str(err.args[0])) from None

    def instruction(self) -> str:
        return INSTRUCTION

    def _reset(self, task_id: str) -> tuple[str, dict[str, Any]]:
        try:
            goal = self.goals.goal(task_id)
        except (KeyError, ValueError) as err:
            raise BenchmarkError(str(err.args[0])) from None
        self._goal = goal
        self._state = self.shop.start()
        self.last_purchase = None
        meta = {
            "task_type": "webshop",
            "instruction": goal.instruction_text,
            "target_asin": goal.asin,
            "goal_attributes": list(goal.attributes),
            "goal_options": dict(goal.goal_options),
            "price_upper": goal.price_upper,
            "split": "test" if goal.index < self.goals.num_test_goals else "train",
        }
        return self.shop.render(self._state, goal), meta

    def _step(self, action: str) -> StepResult:
        outcome = self.shop.step(self._state, self.goal, action)
        self._state = outcome.state
        info: dict[str, Any] = {"invalid": outcome.invalid, "page": outcome.state.page}
        if outcome.purchase is not None:
            self.last_purchase = outcome.purchase
            info["purchase"] = outcome.purchase
        return StepResult(outcome.observation, outcome.reward, outcome.done, info)

    def admissible_actions(self) -> list[str]:
        if self._state.page == SEARCH:
            if self.search_words == "instruction":  # the query's words are the goal's (hpl.webshop.lexicon)
                return [FreeArgument("search[", CLOSE, instruction_words(self.goal.instruction_text))]
            return ["search[...]"]
        if self._state.page == DONE:
            return []
        return [f"click[{button.label}]" for button in self.shop.buttons(self._state)]

    # --- fast snapshots ---------------------------------------------------------------------------
    def snapshot(self) -> WebShopSnapshot:
        if self._task_id is None:
            raise RuntimeError("webshop: snapshot() called before reset()")
        return WebShopSnapshot(self._task_id, tuple(self._actions), self._state)

    def restore(self, snapshot: Any) -> None:
        if not isinstance(snapshot, WebShopSnapshot):
            raise TypeError(f"webshop: not a snapshot of this environment: {type(snapshot).__name__}")
        self._goal = self.goals.goal(snapshot.task_id)
        self._task_id = snapshot.task_id
        self._actions = list(snapshot.actions)
        self._state = snapshot.state
        self.last_purchase = None

    # --- read-only views (for the oracle expert and tests) -----------------------------------------
    @property
    def goal(self) -> Goal:
        if self._goal is None:
            raise RuntimeError("webshop: no task; call reset() first")
        return self._goal

    @property
    def state(self) -> PageState:
        return self._state

    def observation(self) -> str:
        """The current page rendered again (what the last valid action showed)."""
        return self.shop.render(self._state, self.goal)
