"""WebShop engine: catalogue, goals, search, reward, pages, snapshots and the oracle expert."""

from __future__ import annotations

import pytest

from hpl.envs import make_env
from hpl.envs.base import BenchmarkError
from hpl.episodes import advance, start_episode
from hpl.trajectory import validate_trajectory
from hpl.webshop import CatalogueMissing, build_goals, load_catalogue, score_purchase
from hpl.webshop.catalogue import parse_options, parse_pricing
from hpl.webshop.env import WebShopEnv
from hpl.webshop.expert import collect_expert, plan, run_oracle
from hpl.webshop.goals import NO_PRICE_BOUND
from hpl.webshop.pages import PageState, parse_action
from hpl.webshop.reward import fuzzy_score, normalize_color, option_matches, option_reward

MIN_TOP10_HIT_RATE = 0.8  # measured 0.885 on the test goals with the default seed


@pytest.fixture(scope="module")
def env(webshop_mirror) -> WebShopEnv:
    return make_env("webshop", data_dir=webshop_mirror)


@pytest.fixture(scope="module")
def test_goals(env):
    return env.goals.split("test")


def buy(env, goal, asin=None, options=None, price=None):
    asin = asin or goal.asin
    options = goal.goal_options if options is None else options
    price = env.goals.prices[asin] if price is None else price
    return score_purchase(goal, asin, options, price, env.catalogue)


# --- catalogue --------------------------------------------------------------------------------------
def test_missing_file_names_file_and_setting(tmp_path):
    with pytest.raises(CatalogueMissing) as err:
        load_catalogue(tmp_path)
    message = str(err.value)
    assert "items_shuffle_1000.json" in message and "data_mirror" in message and "HPL_DATA_MIRROR" in message
    assert isinstance(err.value, BenchmarkError)


def test_catalogue_is_normalised_and_cached(webshop_mirror):
    catalogue = load_catalogue(webshop_mirror)
    assert len(catalogue) == 1000 and load_catalogue(webshop_mirror) is catalogue
    assert parse_pricing("$16.99$26.99") == ((16.99, 26.99), "$16.99 to $26.99")
    assert parse_pricing("") == ((100.0,), "$100.0")
    assert parse_options({"Color": [{"value": "Black/White "}], "Size": None}) == {
        "color": ("black | white",)
    }
    product = next(p for p in catalogue.products if p.options)
    assert all(name == name.lower() for name in product.options)


# --- goals ------------------------------------------------------------------------------------------
def test_split_sizes_and_ids(env):
    test_ids, train_ids = env.task_ids("test"), env.task_ids("train")
    assert len(test_ids) == 200 and test_ids[0] == "ws-0"
    assert len(train_ids) == len(env.goals.goals) - 200 > 6000
    assert not set(test_ids) & set(train_ids)
    with pytest.raises(BenchmarkError):
        env.task_ids("valid")


def test_goals_deterministic_per_seed(webshop_mirror):
    catalogue = load_catalogue(webshop_mirror)
    first, again, other = (
        build_goals(catalogue, seed=7),
        build_goals(catalogue, seed=7),
        build_goals(catalogue, seed=8),
    )
    assert first.goals == again.goals and first.prices == again.prices
    assert [g.instruction_text for g in first.goals] != [g.instruction_text for g in other.goals]


def test_goal_text_carries_options_and_price(test_goals):
    goal = next(g for g in test_goals if g.goal_options and g.price_upper < NO_PRICE_BOUND)
    for name, value in goal.goal_options.items():
        assert f"{name}: {value}" in goal.instruction_text
    assert goal.instruction_text.endswith(f", and price lower than {goal.price_upper:.2f} dollars")


# --- search -----------------------------------------------------------------------------------------
def test_search_finds_most_targets_in_top_10(env, test_goals):
    hits = sum(g.asin in env.engine.search(g.instruction_text.lower())[:10] for g in test_goals)
    rate = hits / len(test_goals)
    print(f"webshop search hit rate (top 10, test goals): {rate:.3f}")
    assert rate >= MIN_TOP10_HIT_RATE
    assert len(env.engine.search("shirt")) == 50
    assert env.engine.search("the of and") == ()


# --- reward -----------------------------------------------------------------------------------------
def _goal(env, asin, **options):
    """The goal for product `asin` whose options include `options` (found by content: ids depend on the seed)."""
    return next(
        g
        for g in env.goals.goals
        if g.asin == asin and all(g.goal_options.get(k) == v for k, v in options.items())
    )


def test_option_reward_reproduces_released_test_cases():
    # Cases and expected values from the released tests (princeton-nlp/WebShop master,
    # tests/web-agent-site/engine/test_goal.py, test_get_option_reward): plain-value goal options.
    assert option_reward(["pack of 12", "grey", "XL"], ["grey", "XL", "pack of 12"]) == (1.0, 3)
    assert option_reward(["pack of 12", "blue", "XL"], ["grey", "XL", "pack of 12"]) == (2 / 3, 2)
    assert option_reward(["pack of 12", "powder snow", "XL"], ["cool powder snow", "XL", "pack of 12"]) == (
        1.0,
        3,
    )
    assert option_reward(["goal 1", "goal 2"], []) == (None, 0)
    assert option_reward([], ["goal 1", "goal 2"]) == (0.0, 0)
    # Its test_get_reward passes dict goal options, i.e. (name, value) pairs: bought grey/XL score 1.0
    # against {"color": "grey", "size": "XL"} (2 of 2 hit) and 4/7 once "amount": "pack of 12" is added
    # with 1 of 3 attributes and the price matched, so 2 of the 3 pairs are hit.
    assert option_reward(["grey", "XL"], list({"color": "grey", "size": "XL"}.items())) == (1.0, 2)
    pairs = list({"color": "grey", "size": "XL", "amount": "pack of 12"}.items())
    assert option_reward(["grey", "XL"], pairs) == (2 / 3, 2)


def test_goal_options_are_matched_as_name_value_pairs(env):
    # Derived by reading master's get_reward/get_option_reward and normalize.py: the bought value is a string,
    # so normalize_color's `in` is a substring test ("l.brown2060" -> "brown"); the goal option is a
    # (name, value) pair, where `in` tests membership, so it stays a pair and thefuzz compares "brown" with
    # str(pair) = "('color', 'l.brown2060')": token_set_ratio 45 (thefuzz 0.19.0), not > 85.
    goal = _goal(env, "B07S7HDC88", color="l.brown2060")
    n = len(goal.attributes) + len(goal.goal_options) + 1
    score = buy(env, goal)  # the target, the goal's own options, within budget
    assert score["option_matches"] == len(goal.goal_options) - 1
    assert score["reward"] == pytest.approx((n - 1) / n)
    # A goal value that *is* a base colour is a member of its pair, so it normalises like the bought one.
    black = _goal(env, "B09S3TWKSC", color="black", size="7.5")
    assert option_matches(black, black.goal_options) == 2
    # thefuzz's token-set ratio is 100 when one side's tokens are a subset of the other's: a bought "large"
    # ({large}) hits the goal pair ('size', 'x-large') ({size, x, large}); a bought "7" hits ('size', '7.5').
    # The converse does not: "x-large" against ('size', 'large') scores 83.
    xl = _goal(env, "B09QSQ8RT9", color="blue", size="x-large")
    assert option_matches(xl, {**xl.goal_options, "size": "large"}) == 2
    assert option_matches(black, {**black.goal_options, "size": "7"}) == 2
    assert option_reward(["x-large"], [("size", "large")]) == (0.0, 0)
    # No look-up in the product text: "a-blue" ("blue", named in this product's text) earns nothing for b-bk2.
    bk2 = _goal(env, "B09T756KQ5", color="b-bk2", size="3x-large")
    assert option_matches(bk2, {**bk2.goal_options, "color": "a-blue"}) == 1


def test_target_with_goal_options_misses_full_credit_on_458_goals(env):
    # An independent audit that ran the released goal.py on this 1000-product catalogue's 6910 synthetic
    # goals found 458 whose exact requested options do not get full option credit (the pair/value mismatch
    # above); buying the target with the goal's options at its price scores 1.0 on all the others.
    short = [g for g in env.goals.goals if option_matches(g, g.goal_options) < len(g.goal_options)]
    assert len(env.goals.goals) == 6910 and len(short) == 458
    for goal in env.goals.split("test"):
        assert (buy(env, goal)["reward"] == 1.0) == (goal not in short)


def test_price_over_bound_costs_one_share(env, test_goals):
    for goal in (g for g in test_goals if g.price_upper < NO_PRICE_BOUND):
        n = len(goal.attributes) + len(goal.goal_options) + 1
        within = buy(env, goal)["reward"]
        score = buy(env, goal, price=goal.price_upper + 0.01)
        assert score["r_price"] == 0.0 and score["reward"] == pytest.approx(within - 1 / n)


def _unmatched_value(env, goal, name):
    """Another value of option `name` that the reward does not count as the goal's."""
    product = env.catalogue[goal.asin]
    for value in product.options[name]:
        options = {**goal.goal_options, name: value}
        if option_matches(goal, options) == len(goal.goal_options) - 1:
            return value
    return None


def test_wrong_option_costs_one_share_each(env, test_goals):
    checked = 0
    for goal in (g for g in test_goals if g.goal_options):
        name = sorted(goal.goal_options)[0]
        wrong = _unmatched_value(env, goal, name)
        if wrong is None:
            continue
        n = len(goal.attributes) + len(goal.goal_options) + 1
        assert buy(env, goal, options={**goal.goal_options, name: wrong})["reward"] == pytest.approx(
            (n - 1) / n
        )
        checked += 1
    assert checked >= 50
    goal = next(g for g in test_goals if len(g.goal_options) == 2)
    n = len(goal.attributes) + 3
    assert buy(env, goal, options={})["reward"] == pytest.approx((n - 2) / n)  # nothing selected


def test_wrong_product_scores_by_the_formula(env, test_goals):
    goal = test_goals[0]
    n = len(goal.attributes) + len(goal.goal_options) + 1
    others = [p for p in env.catalogue.products if p.asin != goal.asin]
    seen_types = set()
    for product in others[:200]:
        score = buy(env, goal, asin=product.asin, options={})
        expected = (
            score["r_type"] * (score["attribute_matches"] + score["option_matches"] + score["r_price"]) / n
        )
        assert score["reward"] == pytest.approx(expected) and score["reward"] < 1.0
        assert score["r_type"] in (0.0, 0.1, 0.5, 1.0)
        seen_types.add(score["r_type"])
    assert {0.0, 1.0} <= seen_types
    # a product of an unrelated type whose title shares no noun with the goal's scores 0
    unrelated = next(p for p in others if buy(env, goal, asin=p.asin, options={})["title_score"] == 0.0)
    assert buy(env, goal, asin=unrelated.asin)["reward"] == 0.0


def test_fuzzy_matching_follows_thefuzz_and_colour_normalisation():
    assert fuzzy_score("grey", "Grey!") == 100
    assert fuzzy_score("x-large", "large") == 100  # token-set: a subset scores 100
    assert fuzzy_score("black", "white") < 85
    for value, colour in [
        ("black forest", "black"),
        ("violet lavender", "lavender"),
        ("123alabaster", "alabaster"),
        ("steelivy fuchsia", "fuchsia"),
        ("webshop", "webshop"),
        ("", ""),
    ]:
        assert normalize_color(value) == colour


# --- pages and actions --------------------------------------------------------------------------------
def test_page_transitions(env):
    goal = env.goals.goal("ws-0")
    first, meta = env.reset("ws-0")
    assert first == f"WebShop [SEP] Instruction: [SEP] {goal.instruction_text} [SEP] Search"
    assert meta["task_type"] == "webshop" and meta["target_asin"] == goal.asin and meta["instruction"]
    assert env.admissible_actions() == ["search[...]"]

    page1 = env.step("search[men's shirt long sleeve]").observation
    assert page1.startswith(
        f"Instruction: [SEP] {goal.instruction_text} [SEP] Back to Search [SEP] Page 1 (Total results: 50) [SEP] Next > [SEP] "
    )
    assert "< Prev" not in page1
    page2 = env.step("click[Next >]").observation
    assert "Page 2 (Total results: 50) [SEP] < Prev [SEP] Next >" in page2
    assert env.step("click[< prev]").observation == page1

    asin = env.state.results[0]
    item = env.step(f"click[{asin.lower()}]").observation  # case-insensitive, as the original
    product = env.catalogue[asin]
    assert " [SEP] < Prev [SEP] " in item and item.endswith(
        "Description [SEP] Features [SEP] Reviews [SEP] Buy Now"
    )
    assert f"{product.title} [SEP] Price: {product.price_tag} [SEP] Rating: {product.rating}" in item
    assert "click[Buy Now]" in env.admissible_actions()

    name, values = next(iter(product.options.items())) if product.options else (None, ())
    if values:
        env.step(f"click[{values[-1]}]")
        assert env.state.selected() == {name: values[-1]}
    description = env.step("click[DESCRIPTION]").observation
    assert description.startswith(
        f"Instruction: [SEP] {goal.instruction_text} [SEP] Back to Search [SEP] < Prev"
    )
    assert product.description.strip() in description
    env.step("click[< Prev]")
    features = env.step("click[Features]").observation
    assert product.bullet_points[0].strip() in features
    assert env.step("click[< Prev]").observation == item  # options kept, page the same
    assert env.state.selected() == ({name: values[-1]} if values else {})
    assert env.step("click[< Prev]").observation == page1  # item -> its results page
    assert env.step("click[Back to Search]").observation == first


def test_malformed_actions_leave_state_unchanged(env):
    env.reset("ws-0")
    on_search = ["click[", "search[]", "search[  ]", "foo[bar]", "search[a]]", "click[Buy Now]", "", "buy it"]
    env.step("search[shirt]")
    env.step(f"click[{env.state.results[0]}]")
    other = next(p for p in env.catalogue.products if p.options and p.asin != env.state.asin)
    foreign_option = next(
        v
        for vs in other.options.values()
        for v in vs
        if v not in {x for xs in env.catalogue[env.state.asin].options.values() for x in xs}
    )
    on_item = [
        "click[Next >]",
        "search[shirt]",
        f"click[{foreign_option}]",
        "click[nothing here]",
        "click[[x]",
    ]
    for actions, prefix in ((on_search, []), (on_item, ["search[shirt]", f"click[{env.state.asin}]"])):
        env.reset("ws-0")
        for action in prefix:
            env.step(action)
        before, shown = env.state, env.observation()
        for action in actions:
            result = env.step(action)
            assert result.info["invalid"] and result.observation.startswith("Invalid action!"), action
            assert result.reward == 0.0 and not result.done
            assert env.state == before and env.observation() == shown


def test_parse_action():
    assert parse_action("click[< Prev]") == ("click", "< Prev")
    assert parse_action("Search[a [b] c]") == ("search", "a [b] c")
    assert parse_action("click[a]]") is None and parse_action("click a") is None


def test_purchase_ends_episode(env):
    env.reset("ws-1")
    for _, action in plan(env):
        result = env.step(action)
    assert result.done and result.reward == 1.0 and result.info["purchase"]["asin"] == env.goal.asin
    after = env.step("click[Back to Search]")
    assert after.done and after.info["invalid"] and after.reward == 1.0


def test_turns_and_turn_limit_as_eto_ipr_handle_them(env):
    # ETO/IPR's WebShopEnv (eval_agent/envs/webshop_env.py): the first observation is the page itself, later
    # ones f"Observation:\n{observation}"; a reply without "Action: " is answered "Observation: Invalid
    # format. The input must contains 'Action: '" and counts as a step; at max_steps the reward is 0 unless
    # that very step bought (their `if done:` comes after the max_steps branch and restores the reward).
    episode = start_episode(env, "ws-3")
    assert episode.conversations[2]["value"].startswith("WebShop [SEP] Instruction: [SEP] ")
    advance(env, episode, "Let me think.", max_turns=10)
    assert (
        episode.conversations[-1]["value"]
        == "Observation: Invalid format. The input must contains 'Action: '"
    )
    assert episode.turns == 1 and episode.invalid_actions == 1 and not episode.done
    advance(env, episode, "Thought: look.\nAction: search[shirt]", max_turns=10)
    assert episode.conversations[-1]["value"].startswith("Observation:\nInstruction: [SEP] ")
    while not episode.done:
        advance(env, episode, "Thought: again.\nAction: click[Next >]", max_turns=10)
    assert episode.turns == 10 and episode.reward == 0.0
    env.reset("ws-3")
    turns = plan(env)
    episode = start_episode(env, "ws-3")
    for _ in range(10 - len(turns)):
        advance(env, episode, "hmm", max_turns=10)
    for thought, action in turns:
        advance(env, episode, f"Thought: {thought}\nAction: {action}", max_turns=10)
    assert episode.turns == 10 and episode.done and episode.reward == env.last_purchase["reward"] > 0.8
    # the oracle's expert data carry the same observation text
    record = run_oracle(env, "ws-3")
    assert all(t["value"].startswith("Observation:\n") for t in record["conversations"][4::2])


# --- snapshots ----------------------------------------------------------------------------------------
def test_snapshot_restore_matches_replay(env):
    assert WebShopEnv.fast_restore
    env.reset("ws-2")
    actions = [action for _, action in plan(env)]
    extra = ["click[Description]", "click[< Prev]", "click[< Prev]", "click[Next >]", "click[Back to Search]"]
    for action in actions[:2]:
        env.step(action)
    snap = env.snapshot()
    first = [env.step(a).observation for a in extra]
    env.restore(snap)
    assert env.actions == actions[:2] and env.task_id == "ws-2"
    assert [env.step(a).observation for a in extra] == first
    env.reset("ws-2")  # the reference: reset and replay
    for action in actions[:2]:
        env.step(action)
    assert [env.step(a).observation for a in extra] == first
    env.restore(snap)
    rest = [env.step(a) for a in actions[2:]]
    assert rest[-1].done and rest[-1].reward == 1.0
    with pytest.raises(TypeError):
        env.restore(PageState())


# --- oracle expert ----------------------------------------------------------------------------------
def test_oracle_trajectories_are_valid_and_rewarded(env):
    ids = env.task_ids("test")
    kept, card = collect_expert(env, ids)
    assert card["tasks"] == 200 and card["kept"] == len(kept) >= 190
    assert card["thoughts"].startswith("templated") and card["mean_reward_kept"] >= 0.8
    for record in kept:
        validate_trajectory(record)
        assert record["reward"] >= 0.8 and record["task_type"] == "webshop"
        assert len(record["conversations"][3:]) // 2 + 1 <= WebShopEnv.max_turns
    record = run_oracle(env, ids[0])
    assert record["conversations"][3]["value"].startswith("Thought: ")
    assert "\nAction: search[" in record["conversations"][3]["value"]
