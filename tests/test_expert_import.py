"""Importing existing expert data (`expert_source: import`, hpl.expert_import).

There are no ETO/IPR files in the offline mirror, so the files are built here in their format (a JSON list
of {"id", "conversations", "reward"}, ALFWorld with ETO's `game_file` and no reward) from this project's
own experts (WebShop's oracle, ALFWorld's walkthrough on validation games, InterCode-SQL's gold query),
plus crafted bad rows: each bad row must be named in the data card and the log, never dropped silently.
"""

from __future__ import annotations

import json
import logging

import pytest

from hpl.envs import make_env
from hpl.expert_import import (
    ExpertImportError,
    check_import_config,
    import_experts,
    load_rows,
    task_index,
)
from hpl.trajectory import build_trajectory, validate_trajectory


def _eto(record: dict, raw_id, **extra) -> dict:
    return {"id": raw_id, "conversations": record["conversations"], **extra}


def _write(tmp_path, rows, name="sft.json"):
    path = tmp_path / name
    path.write_text(json.dumps(rows))
    return path


def _reasons(card) -> dict:
    return {p["row"]: p["reason"] for p in card["problems"]}


# ------------------------------------------------------------------------------------------ WebShop


@pytest.fixture(scope="module")
def webshop_experts(webshop_mirror):
    from hpl.webshop.expert import collect_expert

    env = make_env("webshop", data_dir=webshop_mirror)
    records, _ = collect_expert(env, ["ws-200", "ws-201", "ws-202", "ws-203"], threshold=0.0)
    return {r["id"]: r for r in records}


def test_webshop_import_maps_goal_indices_and_reports_every_bad_row(
    tmp_path, webshop_mirror, webshop_experts, caplog
):
    caplog.set_level(logging.WARNING)
    ws = webshop_experts
    good = [r for r in ws.values() if r["reward"] >= 0.8]
    assert len(good) >= 3, "the oracle should solve most of these goals"
    a, b, c = good[:3]
    (d,) = [r for r in ws.values() if r["id"] not in {a["id"], b["id"], c["id"]}]
    index_of = lambda r: int(r["id"].split("-")[1])  # noqa: E731
    no_action = json.loads(json.dumps(a["conversations"]))
    no_action[3]["value"] = "Thought: I am not sure what to do."
    not_alternating = a["conversations"][:3] + [a["conversations"][2]] + a["conversations"][3:]
    rows = [
        _eto(a, index_of(a), reward=a["reward"]),  # 0: int id n -> ws-n
        _eto(b, str(index_of(b)), reward=b["reward"]),  # 1: "n" -> ws-n
        # 2: "ws-n" kept as it is; a trailing observation is dropped; no reward -> 1.0 (counted)
        {"id": c["id"], "conversations": c["conversations"] + [{"from": "human", "value": "Observation: x"}]},
        _eto(a, 5, reward=1.0),  # 3: a test goal
        _eto(a, 999999, reward=1.0),  # 4: no such goal
        _eto(a, "abc", reward=1.0),  # 5: not an index
        _eto(a, index_of(a), reward=1.0),  # 6: duplicate
        {"id": 300, "conversations": not_alternating, "reward": 1.0},  # 7: schema
        {"id": 301, "conversations": no_action, "reward": 1.0},  # 8: an agent turn without action
        _eto(a, 4000, reward=1.0),  # 9: another goal's conversation
        _eto(d, d["id"], reward=0.5),  # 10: below WebShop's 0.8
        {"id": 303},  # 11: no conversations
        "not an object",  # 12
        _eto(a, 304, reward="high"),  # 13: reward not a number
    ]
    path = _write(tmp_path, rows)
    index = task_index("webshop", webshop_mirror)
    kept, card = import_experts("webshop", path, index)

    assert [r["id"] for r in kept] == [a["id"], b["id"], c["id"]]
    for record in kept:
        validate_trajectory(record)
        assert record["conversations"][-1]["from"] == "gpt" and record["source"] == "import"
        assert record["split"] == "train" and record["n_actions"] >= 1
    assert kept[0]["source_id"] == index_of(a) and kept[2]["reward"] == 1.0
    assert card["rows"] == len(rows) and card["kept"] == 3 and card["reward_missing"] == 1
    assert card["rejected"] == len(rows) - 3 and card["below_threshold"] == 1
    reasons = _reasons(card)
    assert sorted(reasons) == list(range(3, len(rows)))
    assert "test goal" in reasons[3]
    assert "no WebShop train goal ws-999999" in reasons[4]
    assert "not a WebShop goal index" in reasons[5]
    assert "duplicate" in reasons[6]
    assert "alternate" in reasons[7]
    assert "turn 3 (gpt) has no 'Action: ...' line" in reasons[8]
    assert "does not describe task ws-4000" in reasons[9]
    assert "below the threshold 0.8" in reasons[10]
    assert "no conversations" in reasons[11] and "not an object" in reasons[12]
    assert "not a number" in reasons[13]
    for row, reason in reasons.items():  # the log says the same, row by row
        assert f"row {row} " in caplog.text and reason in caplog.text
    assert card["config_key"] == "webshop.expert_file" and len(card["sha256"]) == 64

    # train_tasks keeps a seeded subset of the valid rows, and says how many it left out
    kept2, card2 = import_experts("webshop", path, index, train_tasks=2)
    assert len(kept2) == 2 and card2["not_selected"] == 1 and card2["valid"] == 3


def test_missing_or_malformed_file_is_named(tmp_path, webshop_mirror):
    missing = tmp_path / "nowhere" / "webshop_sft.json"
    with pytest.raises(
        ExpertImportError, match=r"webshop\.expert_file: expert file not found: .*webshop_sft"
    ):
        load_rows(missing, "webshop.expert_file")
    config = {"benchmarks": ["webshop"], "webshop": {"expert_source": "import", "expert_file": str(missing)}}
    with pytest.raises(ExpertImportError, match="webshop.expert_file: expert file not found"):
        check_import_config(config)
    config["webshop"]["expert_file"] = None
    with pytest.raises(ExpertImportError, match="names no file"):
        check_import_config(config)
    config["webshop"]["expert_source"] = "oracle"
    check_import_config(config)  # not importing: nothing to check

    (tmp_path / "d.json").write_text('{"id": 1}')
    with pytest.raises(ExpertImportError, match="must hold a JSON list"):
        load_rows(tmp_path / "d.json")
    (tmp_path / "e.jsonl").write_text('{"id": 1}\n{"id": 2}\n')
    assert load_rows(tmp_path / "e.jsonl") == [{"id": 1}, {"id": 2}]  # JSON lines are accepted
    (tmp_path / "f.json").write_text("[{oops")
    with pytest.raises(ExpertImportError, match="neither a JSON list nor JSON lines"):
        load_rows(tmp_path / "f.json")


def test_a_utf8_bom_is_accepted(tmp_path):
    """Files saved by Windows editors start with a UTF-8 byte order mark; json.loads rejects it."""
    rows = [{"id": 1, "conversations": [{"from": "human", "value": "caf\u00e9"}]}, {"id": 2}]
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(rows).encode())
    assert load_rows(tmp_path / "bom.json") == rows
    lines = "\n".join(json.dumps(row) for row in rows)
    (tmp_path / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + lines.encode())
    assert load_rows(tmp_path / "bom.jsonl") == rows  # JSON lines: the BOM would spoil the first line


# ----------------------------------------------------------------------------------------- ALFWorld


def test_alfworld_import_maps_game_paths(tmp_path, alfworld_data):
    """ETO's ALFWorld rows name their game by `game_file`; ids are row numbers; there is no reward."""
    from hpl.alfworld.data import task_type
    from hpl.alfworld.expert import collect_expert

    index = task_index("alfworld", alfworld_data, split="seen")  # validation games: all the test data has
    by_type = {}
    for tid in index.ids:
        by_type.setdefault(task_type(tid), tid)
    games = [by_type["Pick"], by_type["Clean"]]
    records, _ = collect_expert(
        alfworld_data, games, source="walkthrough", progress=False, cache_dir=str(tmp_path / "cache")
    )
    assert [r["id"] for r in records] == games
    pick, clean = records
    rows = [
        # 0: an absolute path to the game file, as ETO stores it
        {"id": 0, "game_file": f"/data/alfworld/json_2.1.1/{pick['id']}/game.tw-pddl", **_conv(pick)},
        # 1: <task folder>/<trial folder> only
        {"id": 1, "game_file": "/".join(clean["id"].split("/")[-2:]), **_conv(clean)},
        {"id": 2, "game_file": "json_2.1.1/train/pick_x-Y-None-Z-1/trial_T0", **_conv(pick)},  # unknown
        {"id": 3, "game_file": pick["id"], **_conv(clean)},  # the other game's conversation
    ]
    kept, card = import_experts("alfworld", _write(tmp_path, rows), index)
    assert [r["id"] for r in kept] == games
    assert [r["task_type"] for r in kept] == ["Pick", "Clean"] and card["reward_missing"] == 2
    assert kept[0]["conversations"] == pick["conversations"]
    reasons = _reasons(card)
    assert "unknown ALFWorld game 'train/pick_x-Y-None-Z-1/trial_T0'" in reasons[2]
    assert f"does not describe task {pick['id']}" in reasons[3]
    # the trial folder alone is enough when it is unique
    rows = [{"id": pick["id"].split("/")[-1], **_conv(pick)}]
    kept, _ = import_experts("alfworld", _write(tmp_path, rows, "b.json"), index)
    assert [r["id"] for r in kept] == [pick["id"]]


def _conv(record: dict) -> dict:
    return {"conversations": record["conversations"]}


# ------------------------------------------------------------------------------------ InterCode-SQL


def test_intercode_import_maps_task_indices(tmp_path, intercode_mirror):
    from hpl.intercode.actions import format_sql_action
    from hpl.intercode.env import INSTRUCTION
    from hpl.intercode.tasks import load_tasks, split_tasks

    index = task_index("intercode_sql", intercode_mirror)
    tasks = {t.task_id: t for t in load_tasks(intercode_mirror)}
    parts = split_tasks(list(tasks.values()))

    def row(task_id, raw_id, question=None):
        steps = [
            (
                "Thought: the gold query answers it.\nAction: " + format_sql_action(tasks[task_id].gold),
                "[(1,)]",
            ),
            ("Thought: done.\nAction: submit", "done"),
        ]
        record = build_trajectory(task_id, INSTRUCTION, question or tasks[task_id].question, steps, 1.0)
        return {"id": raw_id, "conversations": record["conversations"], "reward": 1.0}

    train, test = parts.train[0], parts.test[0]
    rows = [
        row(train, int(train)),
        row(parts.train[1], parts.train[1]),
        row(test, int(test)),  # a test task
        row(parts.train[2], parts.train[2], question="How many singers are there?"),  # another question
    ]
    kept, card = import_experts("intercode_sql", _write(tmp_path, rows), index)
    assert [r["id"] for r in kept] == [train, parts.train[1]]
    assert kept[0]["task_type"] == tasks[train].hardness
    reasons = _reasons(card)
    assert f"task {test} is in the test split" in reasons[2]
    assert "does not describe task" in reasons[3]
