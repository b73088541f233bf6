"""ALFWorld on the real engine and the real mirror data (validation tarball only, extracted once per session).

Pins: data preparation, task ids and types, the environment protocol (ETO/IPR-style observations, invalid
actions, aliases), both expert sources on every task type, and the fast path (translation cache, memoized
command text, registry restore) against the unmodified textworld engine step by step.
"""

from __future__ import annotations

import random
import re
import shutil
import sys
from pathlib import Path

import pytest

textworld = pytest.importorskip("textworld")
pytest.importorskip("alfworld")

from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredInfos  # noqa: E402
from textworld.envs.pddl import PddlEnv  # noqa: E402

from hpl.alfworld import data as alfdata  # noqa: E402
from hpl.alfworld.data import prepare_alfworld_data, task_type  # noqa: E402
from hpl.alfworld.engine import EngineError  # noqa: E402
from hpl.alfworld.env import AlfworldEnv, first_observation, to_engine_command  # noqa: E402
from hpl.alfworld.expert import SOURCES, collect_expert, play  # noqa: E402
from hpl.envs.base import BenchmarkError, Environment, ReplaySnapshot, make_env  # noqa: E402
from hpl.episodes import advance, start_episode  # noqa: E402
from hpl.io import ResumableJsonl  # noqa: E402
from hpl.react import parse_action  # noqa: E402
from hpl.trajectory import actions_of, validate_trajectory  # noqa: E402

# One validation game per task type on which both expert sources win within 30 turns (the handcoded
# expert is seeded per game, so this is deterministic).
GAMES = {
    "Pick": "valid_seen/pick_and_place_simple-Book-None-Sofa-229/trial_T20190907_042856_259139",
    "Clean": "valid_seen/pick_clean_then_place_in_recep-Fork-None-CounterTop-23/trial_T20190908_233922_171295",
    "Heat": "valid_seen/pick_heat_then_place_in_recep-Apple-None-DiningTable-26/trial_T20190907_060234_011675",
    "Cool": "valid_seen/pick_cool_then_place_in_recep-Apple-None-CounterTop-14/trial_T20190909_044933_815840",
    "Examine": "valid_seen/look_at_obj_in_light-AlarmClock-None-DeskLamp-323/trial_T20190909_044715_250790",
    "Pick2": "valid_seen/pick_two_obj_and_place-AlarmClock-None-Dresser-305/trial_T20190907_165826_194855",
}


@pytest.fixture(scope="session")
def env(alfworld_data, tmp_path_factory) -> AlfworldEnv:
    return AlfworldEnv(alfworld_data, cache_dir=tmp_path_factory.mktemp("alfworld_cache"))


def stock_engine(game_file: Path):
    """The unmodified engine, wrapped as ALFWorld wraps it (no caches, no memoized text)."""
    infos = textworld.EnvInfos(
        won=True, admissible_commands=True, facts=True, extras=["gamefile", "walkthrough"]
    )
    engine = AlfredInfos(AlfredDemangler(PddlEnv(infos), shuffle=False))
    argv = list(sys.argv)  # fast_downward.pddl2sas overwrites sys.argv
    try:
        engine.load(str(game_file))
        engine.reset()
    finally:
        sys.argv[:] = argv
    return engine


def stock_reset(engine):
    argv = list(sys.argv)
    try:
        return engine.reset()
    finally:
        sys.argv[:] = argv


# --- data and task ids ------------------------------------------------------------------------------------
def test_task_type_mapping():
    assert task_type("train/pick_and_place_simple-Mug-None-Desk-308/trial_1") == "Pick"
    assert task_type("valid_seen/pick_clean_then_place_in_recep-Cloth-None-CounterTop-424/t") == "Clean"
    assert task_type("valid_seen/pick_heat_then_place_in_recep-Apple-None-DiningTable-26/t") == "Heat"
    assert task_type("valid_unseen/pick_cool_then_place_in_recep-Apple-None-DiningTable-26/t") == "Cool"
    assert task_type("valid_unseen/look_at_obj_in_light-AlarmClock-None-DeskLamp-323/t") == "Examine"
    assert task_type("valid_seen/pick_two_obj_and_place-Book-None-Desk-310/t") == "Pick2"
    with pytest.raises(ValueError):
        task_type("valid_seen/make_coffee-Mug-None-Desk-1/t")


def test_task_ids_seen_and_unseen(env, alfworld_data):
    seen, unseen = env.task_ids("seen"), env.task_ids("unseen")
    assert (len(seen), len(unseen)) == (140, 134)
    assert seen == sorted(seen) and unseen == sorted(unseen)
    assert all(t.startswith("valid_seen/") for t in seen) and all(
        t.startswith("valid_unseen/") for t in unseen
    )
    assert {task_type(t) for t in seen} == {"Pick", "Clean", "Heat", "Cool", "Examine", "Pick2"}
    assert all((alfworld_data / "json_2.1.1" / t / "game.tw-pddl").is_file() for t in seen[:5])
    assert set(GAMES.values()) <= set(seen)


def test_prepare_is_a_noop_when_done(alfworld_data, alfworld_mirror):
    marker = alfworld_data / ".hpl-prepared-json_2.1.1-valid.tar.gz"
    stamp = marker.stat().st_mtime_ns
    assert prepare_alfworld_data(alfworld_data, alfworld_mirror, splits=["seen"]) == alfworld_data
    assert marker.stat().st_mtime_ns == stamp
    assert (alfworld_data / "logic" / "alfred.pddl").is_file()
    assert not list(alfworld_data.glob(".extract-*"))


def test_prepare_without_mirror_or_network_names_both_ways(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no alfworld-download on PATH
    with pytest.raises(BenchmarkError) as err:
        prepare_alfworld_data(tmp_path / "data", mirror=None, splits=["seen"])
    message = str(err.value)
    assert "data_mirror" in message and "HPL_DATA_MIRROR" in message and "alfworld-download" in message

    # installed but offline: the same advice, without running it
    monkeypatch.setattr(alfdata.shutil, "which", lambda name: "/usr/bin/alfworld-download")
    monkeypatch.setattr(alfdata, "_online", lambda *a, **k: False)
    monkeypatch.setattr(alfdata.subprocess, "run", lambda *a, **k: pytest.fail("must not run offline"))
    with pytest.raises(BenchmarkError, match="internet"):
        prepare_alfworld_data(tmp_path / "data", mirror=None, splits=["seen"])


def test_missing_and_corrupt_game_file_name_the_file(env, alfworld_data, tmp_path):
    missing = "valid_seen/pick_and_place_simple-Nothing-None-Desk-1/trial_T0"
    with pytest.raises(BenchmarkError, match="pick_and_place_simple-Nothing-None-Desk-1"):
        env.reset(missing)

    # a copy of the data with one corrupt game
    copy = tmp_path / "data"
    source = alfworld_data / "json_2.1.1" / GAMES["Pick"]
    target = copy / "json_2.1.1" / GAMES["Pick"]
    shutil.copytree(source, target)
    (target / "game.tw-pddl").write_text('{"pddl_domain": "(define')
    with pytest.raises(BenchmarkError, match=re.escape(str(target / "game.tw-pddl"))):
        AlfworldEnv(copy).reset(GAMES["Pick"])


# --- the environment protocol ---------------------------------------------------------------------------
def test_reset_gives_eto_observation_and_metadata(env):
    assert make_env("alfworld", data_dir=env.data_dir).name == "alfworld"
    observation, meta = env.reset(GAMES["Heat"])
    assert observation.startswith("You are in the middle of a room.")
    assert "Welcome to TextWorld" not in observation
    assert "\nYour task is to: heat some apple and put it in diningtable." in observation
    assert meta["task_type"] == "Heat" and meta["split"] == "seen" and meta["task_id"] == GAMES["Heat"]
    assert meta["game_file"].endswith("game.tw-pddl")
    instruction = env.instruction()
    for action in (
        "go to",
        "take",
        "put",
        "open",
        "close",
        "toggle",
        "clean",
        "heat",
        "cool",
        "use",
        "look",
        "inventory",
        "examine",
        "Nothing happens",
        "Thought:",
        "Action:",
    ):
        assert action in instruction


def test_invalid_action_gets_the_engine_answer(env):
    env.reset(GAMES["Pick"])
    before = env.admissible_actions()
    for action in ("fly to the moon", "", "take book 99 from sofa 1"):
        result = env.step(action)
        assert result.observation == "Nothing happens."
        assert result.info["invalid"] is True and result.info["won"] is False
        assert result.reward == 0.0 and not result.done
        assert env.admissible_actions() == before


def test_texts_as_eto_ipr_print_them(env):
    # ETO/IPR's AlfWorldEnv (eval_agent/envs/alfworld_env.py) shows process_ob(feedback): a feedback opening
    # with "You arrive at loc N. " is cut up to the first ". ", so their agents read "On the sofa 1, you see
    # ..." (their ICL example: "Observation: On the toiletpaperhanger 1, you see nothing."). alfworld 0.4.2
    # opens with "You arrive at sofa 1. ": the same cut.
    env.reset(GAMES["Pick"])
    result = env.step("go to sofa 1")
    assert env.raw_state["feedback"] == "You arrive at sofa 1. " + result.observation
    assert result.observation.startswith("On the sofa 1, you see ")
    closed = next(a for a in env.admissible_actions() if a.startswith("go to drawer"))
    result = env.step(closed)
    assert re.fullmatch(r"The drawer \d+ is closed\.", result.observation)
    # Their answer to a reply without "Action:" is their own text, and the turn counts.
    episode = start_episode(env, GAMES["Pick"])
    advance(env, episode, "I will look around first.", max_turns=30)
    assert (
        episode.conversations[-1]["value"] == "Observation: Error Input. Your input must contains 'Action: '"
    )
    assert episode.turns == 1 and episode.invalid_actions == 1 and env.actions == [""]
    advance(env, episode, "Thought: go.\nAction: go to sofa 1", max_turns=30)
    assert episode.conversations[-1]["value"].startswith("Observation: On the sofa 1, you see ")


def test_an_engine_fault_is_an_error_not_an_invalid_action(env, monkeypatch):
    """textworld's stock step answers "Nothing happens." to any ValueError raised while applying an
    admissible command; that would score an engine fault as the agent's invalid action. The fault here is
    injected into the real engine's PDDL state (a real fault needs a broken game), and must raise."""
    env.reset(GAMES["Pick"])
    command = env.walkthrough[0]
    pddl_state = env._pddl._pddl_state

    def broken_apply(action):
        raise ValueError("injected: the PDDL state rejects the action")

    monkeypatch.setattr(pddl_state, "apply", broken_apply)
    with pytest.raises(
        EngineError, match=rf"admissible command '{command}' of .*game.tw-pddl: ValueError: injected"
    ):
        env.step(command)
    monkeypatch.undo()
    env.reset(GAMES["Pick"])  # a reset recovers the engine for the next test
    assert env.step("fly to the moon").info["invalid"]  # an invalid command still is the agent's fault


def test_eto_put_wording_maps_to_engine_move(env):
    env.reset(GAMES["Heat"])
    plan = env.walkthrough
    assert plan[-1].startswith("move ")
    for command in plan[:-1]:
        assert not env.step(command).info["invalid"]
    obj_recep = plan[-1][len("move ") :].split(" to ")
    result = env.step(f"put {obj_recep[0]} in/on {obj_recep[1]}")
    assert not result.info["invalid"] and result.info["won"] and result.reward == 1.0 and result.done
    assert to_engine_command("toggle desklamp 1 desk 1", {"use desklamp 1"}) == "use desklamp 1"


def test_turn_limit_ends_the_episode(alfworld_data):
    env = AlfworldEnv(alfworld_data, max_turns=3)
    env.reset(GAMES["Pick"])
    assert [env.step("look").done for _ in range(3)] == [False, False, True]


# --- experts ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("source", SOURCES)
def test_expert_wins_every_task_type(env, source):
    for task_id in GAMES.values():
        episode = play(env, task_id, source)
        assert episode.won, f"{source} expert lost {task_id}"
        assert 1 <= len(episode.actions) <= 30


def test_collect_expert_records_and_card(alfworld_data, tmp_path):
    ids = [GAMES["Pick"], GAMES["Examine"]]
    log = ResumableJsonl(tmp_path / "expert.jsonl")
    records, card = collect_expert(alfworld_data, ids, "walkthrough", progress=False, on_record=log.add)
    assert [r["id"] for r in records] == ids
    for record in records:
        validate_trajectory(record)
        assert record["reward"] == 1.0 and record["source"] == "walkthrough" and record["split"] == "seen"
        assert record["task_type"] == task_type(record["id"])
        assert record["n_actions"] == len(actions_of(record["conversations"]))
        assert all(turn["value"].startswith("Thought: ") for turn in record["conversations"][3::2])
        assert record["conversations"][-1]["from"] == "gpt"
    assert card["attempted"] == card["kept"] == 2 and card["per_type"]["Pick"] == {"attempted": 1, "kept": 1}
    assert card["mean_actions"] > 0

    # resuming skips what is done
    again, card2 = collect_expert(alfworld_data, ids, "walkthrough", progress=False, skip=log.done)
    assert again == [] and card2["skipped_done"] == 2
    assert len(log.finish()) == 2


def test_expert_in_worker_processes_makes_the_same_records_and_card(alfworld_data, tmp_path):
    ids = list(GAMES.values())[:4]
    alone, card = collect_expert(alfworld_data, ids, "handcoded", progress=False)
    log = ResumableJsonl(tmp_path / "expert.jsonl")
    spread, card2 = collect_expert(
        alfworld_data, ids, "handcoded", progress=False, on_record=log.add, workers=2
    )
    assert len(alone) == card["kept"] >= 3
    assert spread == alone and card2 == card
    assert log.finish(order=ids) == alone


def test_handcoded_trajectory_replays_to_a_win(env, alfworld_data):
    records, card = collect_expert(alfworld_data, [GAMES["Pick2"]], "handcoded", progress=False)
    assert card["kept"] == 1
    env.reset(GAMES["Pick2"])
    results = [env.step(action) for action in actions_of(records[0]["conversations"])]
    assert results[-1].info["won"] and not any(r.info["invalid"] for r in results)
    assert all(parse_action(turn["value"]) for turn in records[0]["conversations"][3::2])


# --- snapshots and the fast path --------------------------------------------------------------------------
def _random_actions(rng: random.Random, admissible: list[str], n: int) -> list[str]:
    return [rng.choice(admissible) for _ in range(n)]


def _rollout(env: Environment, rng: random.Random, steps: int) -> list[tuple[str, str, list[str]]]:
    """An MC-style continuation: random admissible actions, recording what the engine answers."""
    trace = []
    for _ in range(steps):
        action = rng.choice(env.admissible_actions())
        result = env.step(action)
        trace.append((action, result.observation, result.info["admissible_actions"], result.info["won"]))
        if result.done:
            break
    return trace


@pytest.mark.parametrize("kind", ["Clean", "Pick2"])
def test_restore_equals_replay(env, alfworld_data, kind):
    task_id = GAMES[kind]
    replay_env = AlfworldEnv(alfworld_data)
    env.reset(task_id)
    prefix = env.walkthrough[:3] + ["look", "not an action"]
    for action in prefix:
        env.step(action)
    snap = env.snapshot()
    observation, admissible = env.raw_state["feedback"], env.admissible_actions()
    first = _rollout(env, random.Random(1), 8)  # wander off, then come back

    env.restore(snap)
    assert env.actions == prefix and env.task_id == task_id
    assert env.raw_state["feedback"] == observation and env.admissible_actions() == admissible

    Environment.restore(replay_env, ReplaySnapshot(task_id, tuple(prefix)))  # the base class: reset + replay
    assert replay_env.raw_state["feedback"] == observation and replay_env.admissible_actions() == admissible
    assert _rollout(env, random.Random(2), 8) == _rollout(replay_env, random.Random(2), 8)

    # a second restore of the same snapshot continues exactly like the first time
    env.restore(snap)
    assert _rollout(env, random.Random(1), 8) == first


def test_restore_after_another_game_falls_back_to_replay(env):
    env.reset(GAMES["Cool"])
    for action in env.walkthrough[:2]:
        env.step(action)
    snap, admissible = env.snapshot(), env.admissible_actions()
    env.reset(GAMES["Heat"])
    env.restore(snap)
    assert env.task_id == GAMES["Cool"]
    assert env.actions == list(snap.actions) and env.admissible_actions() == admissible


def test_translation_cache_on_disk_is_reused(alfworld_data, env):
    env.reset(GAMES["Examine"])  # makes sure the session cache holds this game
    fresh = AlfworldEnv(alfworld_data, cache_dir=env.cache_dir)
    observation, _ = fresh.reset(GAMES["Examine"])
    assert fresh.translations.hits["disk"] >= 1 and fresh.translations.hits["translated"] == 0
    assert observation == env.reset(GAMES["Examine"])[0]


@pytest.mark.parametrize("kind", list(GAMES))
def test_fast_path_matches_stock_engine(alfworld_data, env, kind):
    """Cached translation + memoized command text + parsed-once text derivation + registry restore == the
    unmodified engine, step by step."""
    task_id = GAMES[kind]
    stock = stock_engine(env.game_file(task_id))
    state = stock.state

    def same(result_or_none, stock_state):
        assert env.raw_state["feedback"] == stock_state["feedback"]
        assert env.raw_state["admissible_commands"] == stock_state["admissible_commands"]
        assert env.won == bool(stock_state["won"])

    observation, _ = env.reset(task_id)
    assert observation == first_observation(state["feedback"])
    same(None, state)

    plan = list(state["extra.walkthrough"])
    middle = len(plan) // 2
    snap = None
    for i, command in enumerate(plan):
        if i == middle:
            snap = env.snapshot()
        env.step(command)
        state, _, _ = stock.step(command)
        same(None, state)
    assert state["won"] and env.won

    # restore mid-walkthrough, then random admissible actions (and an invalid one) on both engines
    env.restore(snap)
    stock_reset(stock)
    for command in plan[:middle]:
        state, _, _ = stock.step(command)
    same(None, state)
    rng = random.Random(kind)
    for step in range(25):  # feedback texts of many actions (hpl.alfworld.engine.FastGrammar derives them)
        command = "jump" if step == 4 else rng.choice(state["admissible_commands"])
        env.step(command)
        state, _, _ = stock.step(command)
        same(None, state)
