"""Table aggregation: mean ± std over seeds, empty cells for benchmarks not run."""

import pandas as pd
import pytest

from hpl.tables import EvalRun, episode_metrics, format_cell, table1, type_table, versus_baseline


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
        return tuple(
            {"reward": 0.0, "task_type": "Pick", "action_mode": mode, "actions": ["look"]} for _ in "ab"
        )

    same = [EvalRun("m", "sft", 0, "alfworld", s, rows("admissible")) for s in ("seen", "unseen")]
    assert table1(same)[0].iloc[0]["Actions"] == "admissible"
    mixed = same + [EvalRun("m", "sft", 0, "intercode_sql", "test", rows("free"))]
    assert table1(mixed)[0].iloc[0]["Actions"] == "alfworld: admissible; intercode_sql: free"
    legacy = [EvalRun("m", "sft", 0, "webshop", "test", _episodes([0.5]))]  # rows written before the field
    assert table1(legacy)[0].iloc[0]["Actions"] == "free"


def _webshop(method, seed, rewards):
    return EvalRun("m", method, seed, "webshop", "test", _episodes(rewards))


def test_versus_baseline_flags_differences_beyond_one_std():
    runs = [
        # SFT avg reward 30, 32, 34 (std 2); ETO 40, 41, 42 (std 1): +9 > 2. IPR 30, 36, 33 (std 3): +1 < 3
        *(_webshop("sft", seed, [r / 100]) for seed, r in enumerate([30, 32, 34])),
        *(_webshop("eto", seed, [r / 100]) for seed, r in enumerate([40, 41, 42])),
        *(_webshop("ipr", seed, [r / 100]) for seed, r in enumerate([30, 36, 33])),
    ]
    long = table1(runs)[1]
    versus = versus_baseline(long, "sft").set_index(["Method", "Column"])
    eto = versus.loc[("eto", "WebShop Avg. Reward")]
    assert eto["baseline"] == pytest.approx(32.0) and eto["difference"] == pytest.approx(9.0)
    assert eto["larger_std"] == pytest.approx(2.0) and bool(eto["beyond_one_std"]) is True
    ipr = versus.loc[("ipr", "WebShop Avg. Reward")]
    assert ipr["difference"] == pytest.approx(1.0) and ipr["larger_std"] == pytest.approx(3.0)
    assert bool(ipr["beyond_one_std"]) is False
    assert "sft" not in versus.index.get_level_values("Method")
    # seed by seed: ETO 10, 9, 8 above SFT; IPR 0, +4, -1 (above in one seed of three)
    assert eto["paired_difference"] == pytest.approx(9.0) and eto["paired_std"] == pytest.approx(1.0)
    assert eto["seeds_better"] == "3/3"
    assert ipr["paired_difference"] == pytest.approx(1.0) and ipr["paired_std"] == pytest.approx(7**0.5)
    assert ipr["seeds_better"] == "1/3"


def test_long_table_keeps_each_seeds_value_and_pairs_only_shared_seeds():
    runs = [
        *(_webshop("sft", seed, [r / 100]) for seed, r in [(0, 20), (1, 30), (2, 40)]),
        *(_webshop("eto", seed, [r / 100]) for seed, r in [(0, 25), (2, 38)]),  # seed 1 not run
    ]
    long = table1(runs)[1].set_index(["Method", "Column"])
    assert long.loc[("sft", "WebShop Avg. Reward"), "seeds"] == "0 1 2"
    assert long.loc[("eto", "WebShop Avg. Reward"), "values"] == "25.0000 38.0000"
    eto = (
        versus_baseline(long.reset_index(), "sft")
        .set_index(["Method", "Column"])
        .loc[("eto", "WebShop Avg. Reward")]
    )
    assert eto["difference"] == pytest.approx(31.5 - 30.0)  # means over different seeds
    assert eto["paired_difference"] == pytest.approx((5 - 2) / 2) and eto["seeds_better"] == "1/2"


def test_versus_baseline_leaves_one_seed_undecided():
    long = table1([_webshop("sft", 0, [0.3]), _webshop("eto", 0, [0.5])])[1]
    eto = versus_baseline(long, "sft").set_index(["Method", "Column"]).loc[("eto", "WebShop Avg. Reward")]
    assert eto["difference"] == pytest.approx(20.0)
    assert eto["larger_std"] is None or pd.isna(eto["larger_std"])
    assert eto["beyond_one_std"] is None or pd.isna(eto["beyond_one_std"])


def test_table1_long_has_the_average_once_complete():
    cells = [("alfworld", "seen"), ("alfworld", "unseen"), ("webshop", "test"), ("intercode_sql", "test")]
    runs = [EvalRun("m", "sft", seed, b, s, _episodes([seed / 2])) for seed in (0, 1) for b, s in cells]
    long = table1(runs)[1]
    average = long[long.Column == "Average"].iloc[0]
    # seed 0: six zeros; seed 1 (reward 0.5): success 0, 0, avg reward 50, success 0, avg reward 50, success 0
    assert average["mean"] == pytest.approx((0 + 100 / 6) / 2) and average["n"] == 2
