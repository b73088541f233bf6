"""Table aggregation: mean ± std over seeds, empty cells for benchmarks not run."""

import pytest

from hpl.tables import EvalRun, episode_metrics, format_cell, table1, type_table


def _episodes(rewards, task_type="Pick"):
    return tuple({"reward": r, "task_type": task_type} for r in rewards)


def test_episode_metrics_percentages():
    m = episode_metrics(_episodes([1.0, 0.0, 0.5, 1.0]))
    assert m["success"] == 50.0
    assert m["avg_reward"] == 62.5


def test_format_cell():
    assert format_cell([]) == ""
    assert format_cell([40.0]) == "40.00"
    assert format_cell([40.0, 60.0]) == "50.00 ± 14.14"


def test_table1_mean_std_and_empty_cells():
    runs = [
        EvalRun("tiny", "sft", 0, "alfworld", "seen", _episodes([1, 0, 0, 0])),  # 25
        EvalRun("tiny", "sft", 1, "alfworld", "seen", _episodes([1, 1, 0, 0])),  # 50
        EvalRun("tiny", "sft", 0, "alfworld", "unseen", _episodes([0, 0])),
        EvalRun("tiny", "sft", 1, "alfworld", "unseen", _episodes([1, 0])),
    ]
    wide, long = table1(runs, [("tiny", "sft")])
    row = wide.iloc[0]
    assert row["ALFWorld Seen"] == "37.50 ± 17.68"
    assert row["ALFWorld Unseen"] == "25.00 ± 35.36"
    for column in ["WebShop Avg. Reward", "WebShop Success", "InterCode-SQL Success", "Average"]:
        assert row[column] == ""
    seen = long[long.Column == "ALFWorld Seen"].iloc[0]
    assert seen["mean"] == pytest.approx(37.5) and seen["n"] == 2


def test_table1_average_needs_all_six_cells():
    runs = [
        EvalRun("m", "sft", 0, "alfworld", "seen", _episodes([1.0])),
        EvalRun("m", "sft", 0, "alfworld", "unseen", _episodes([0.0])),
        EvalRun("m", "sft", 0, "webshop", "test", _episodes([0.5])),
        EvalRun("m", "sft", 0, "intercode_sql", "test", _episodes([1.0, 0.0])),
    ]
    row = table1(runs)[0].iloc[0]
    # cells: 100, 0, 50 (avg reward), 0 (success), 50, 50 -> 250 / 6
    assert row["WebShop Avg. Reward"] == "50.00" and row["WebShop Success"] == "0.00"
    assert row["Average"] == f"{250 / 6:.2f}"


def test_type_table_per_type_success():
    episodes = _episodes([1, 0], "Pick") + _episodes([1], "Heat")
    frame = type_table([EvalRun("m", "sft", 0, "alfworld", "seen", episodes)], "seen")
    row = frame.iloc[0]
    assert row["Pick"] == "50.00" and row["Heat"] == "100.00" and row["Cool"] == ""
    assert row["All"] == "66.67"


def test_table1_names_how_actions_were_decoded():
    def rows(mode):
        return tuple({"reward": 0.0, "task_type": "Pick", "action_mode": mode, "actions": ["look"]} for _ in "ab")

    same = [EvalRun("m", "sft", 0, "alfworld", s, rows("admissible")) for s in ("seen", "unseen")]
    assert table1(same)[0].iloc[0]["Actions"] == "admissible"
    mixed = same + [EvalRun("m", "sft", 0, "intercode_sql", "test", rows("free"))]
    assert table1(mixed)[0].iloc[0]["Actions"] == "alfworld: admissible; intercode_sql: free"
    legacy = [EvalRun("m", "sft", 0, "webshop", "test", _episodes([0.5]))]  # rows written before the field
    assert table1(legacy)[0].iloc[0]["Actions"] == "free"
