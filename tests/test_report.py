"""Report pieces: Table 2, phase table (Figure 4), loss ablation (Figure 5), Table 5 resources."""

import json
import math

import pandas as pd
import pytest

from hpl.figures import figure4, figure5
from hpl.resources import benchmark_seconds, format_duration, table5, table5_inputs
from hpl.tables import EvalRun, loss_ablation_table, phase_table, table2

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def _episodes(rewards, task_type="Pick"):
    return tuple({"reward": r, "success": r >= 1, "task_type": task_type} for r in rewards)


def _alf(model, method, seed, seen, unseen):
    return [
        EvalRun(model, method, seed, "alfworld", "seen", _episodes(seen)),
        EvalRun(model, method, seed, "alfworld", "unseen", _episodes(unseen)),
    ]


# --- Table 2 -------------------------------------------------------------------------------------------


def test_table2_rows_labels_and_cells():
    runs = (
        _alf("m", "hpl-semantic", 0, [1, 1, 0, 0], [1, 0])  # 50, 50
        + _alf("m", "hpl-semantic", 1, [1, 1, 1, 0], [1, 1])  # 75, 100
        + _alf("m", "hpl-semantic-static", 0, [1, 0, 0, 0], [0, 0])
        + _alf("m", "hpl-semantic-length", 0, [1, 1, 1, 1], [1, 0])
        + [EvalRun("m", "hpl-semantic-difficulty", 0, "webshop", "test", _episodes([0.5, 1.0]))]
        + _alf("other", "hpl-semantic", 0, [1], [1])  # another model: not asked for
    )
    wide, long = table2(runs, [("m", "hpl-semantic")])
    assert list(wide["Variant"]) == ["Full (dual-layer)", "Static", "Length-only", "Difficulty-only"]
    assert list(wide["Method"]) == [
        "hpl-semantic",
        "hpl-semantic-static",
        "hpl-semantic-length",
        "hpl-semantic-difficulty",
    ]
    assert list(wide.columns[:3]) == ["Model", "Method", "Variant"]
    full = wide.iloc[0]
    assert full["ALFWorld Seen"] == "62.50 ± 17.68"
    assert full["ALFWorld Unseen"] == "75.00 ± 35.36"
    assert full["WebShop Success"] == "" and full["Average"] == ""
    assert wide.iloc[1]["ALFWorld Seen"] == "25.00"
    assert wide.iloc[2]["ALFWorld Seen"] == "100.00" and wide.iloc[2]["ALFWorld Unseen"] == "50.00"
    difficulty = wide.iloc[3]
    assert difficulty["ALFWorld Seen"] == ""
    assert difficulty["WebShop Avg. Reward"] == "75.00" and difficulty["WebShop Success"] == "50.00"
    cell = long[(long.Variant == "Full (dual-layer)") & (long.Column == "ALFWorld Seen")].iloc[0]
    assert cell["mean"] == pytest.approx(62.5) and cell["n"] == 2


# --- phase table ---------------------------------------------------------------------------------------


def test_phase_table_by_hand():
    runs = []
    # phase 1: seen Pick 1/2, Heat 0/1 (All 1/3); phase 2: seen Pick 2/2, Heat 1/1; two seeds for phase 3
    runs.append(
        EvalRun("m", "hpl-x.phase1", 0, "alfworld", "seen", _episodes([1, 0]) + _episodes([0], "Heat"))
    )
    runs.append(
        EvalRun("m", "hpl-x.phase2", 0, "alfworld", "seen", _episodes([1, 1]) + _episodes([1], "Heat"))
    )
    runs.append(EvalRun("m", "hpl-x.phase3", 0, "alfworld", "seen", _episodes([1, 1])))
    runs.append(EvalRun("m", "hpl-x.phase3", 1, "alfworld", "seen", _episodes([1, 0])))
    runs.append(EvalRun("m", "hpl-x.phase1", 0, "alfworld", "unseen", _episodes([0, 0], "Clean")))
    runs.append(EvalRun("m", "hpl-y.phase1", 0, "alfworld", "seen", _episodes([1])))  # other method
    runs.append(EvalRun("m", "hpl-x", 0, "alfworld", "seen", _episodes([0])))  # final model, not a phase
    frame = phase_table(runs, "hpl-x")
    assert list(frame.columns) == ["model", "phase", "split", "task_type", "mean", "std", "n"]

    def cell(phase, split, task_type):
        rows = frame[(frame.phase == phase) & (frame.split == split) & (frame.task_type == task_type)]
        assert len(rows) == 1
        return rows.iloc[0]

    assert cell(1, "seen", "All")["mean"] == pytest.approx(100 / 3)
    assert cell(1, "seen", "Pick")["mean"] == 50.0
    assert cell(1, "seen", "Heat")["mean"] == 0.0
    assert cell(2, "seen", "All")["mean"] == 100.0
    phase3 = cell(3, "seen", "All")
    assert phase3["mean"] == 75.0 and phase3["n"] == 2 and phase3["std"] == pytest.approx(35.355, abs=1e-3)
    assert math.isnan(cell(1, "seen", "Pick")["std"])
    assert cell(1, "unseen", "Clean")["mean"] == 0.0
    # absent combinations are left out, not zero
    assert frame[(frame.phase == 3) & (frame.task_type == "Heat")].empty
    assert frame[(frame.phase == 2) & (frame.split == "unseen")].empty
    assert len(frame) == 3 + 3 + 2 + 2  # p1 seen All/Pick/Heat, p2 same, p3 All/Pick, p1 unseen All/Clean


# --- loss ablation -------------------------------------------------------------------------------------


def _ablation_runs():
    runs = []
    for suffix, seen in [("", [1, 1]), ("-no_traj", [1, 0]), ("-no_step", [1, 1]), ("-no_group", [0, 0])]:
        runs += _alf("m", "hpl-fixed_n" + suffix, 0, seen, [1, 0])
    runs.append(EvalRun("m", "hpl-fixed_n", 0, "webshop", "test", _episodes([1.0, 0.5])))
    return runs


def test_loss_ablation_rows():
    wide, long = loss_ablation_table(_ablation_runs(), "hpl-fixed_n")
    assert list(wide["Variant"]) == ["Full", "w/o trajectory", "w/o step", "w/o group"]
    assert list(wide["Method"]) == [
        "hpl-fixed_n",
        "hpl-fixed_n-no_traj",
        "hpl-fixed_n-no_step",
        "hpl-fixed_n-no_group",
    ]
    assert list(wide["ALFWorld Seen"]) == ["100.00", "50.00", "100.00", "0.00"]
    assert list(wide["WebShop Avg. Reward"]) == ["75.00", "", "", ""]
    # the long table has no row for cells not run
    assert len(long[long.Column == "WebShop Success"]) == 1
    assert set(long.Model) == {"m"}


# --- Table 5 -------------------------------------------------------------------------------------------


def _tsv(path, *seconds):
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"{s}\t0:00:00\t1\t1\t1\t1\t0\t0\t0\t{s / 2}\n" for s in seconds)
    path.write_text(HEADER + rows)
    return path


def test_table5_sums_by_hand(tmp_path):
    b = tmp_path / "results" / "benchmarks" / "alfworld" / "tiny"
    _tsv(b / "sft" / "seed0.tsv", 1080.0)  # 18 min
    _tsv(b / "eto" / "seed0.tsv", 780.0)
    _tsv(b / "ref0" / "explore" / "trajectories.tsv", 3600.0)
    _tsv(b / "ref0" / "explore" / "step_rollouts.tsv", 600.0, 1200.0)  # two repeats -> mean 900
    _tsv(b / "ref0" / "segments" / "semantic.tsv", 30.0)
    _tsv(b / "ref0" / "groups" / "semantic.tsv", 390.0)
    _tsv(b / "hpl-semantic" / "seed0.tsv", 1560.0)
    usage = tmp_path / "results" / "alfworld" / "tiny" / "ref0" / "segments" / "semantic_usage.json"
    usage.parent.mkdir(parents=True)
    usage.write_text(json.dumps({"calls": 40, "cache_hits": 2, "requests": 42, "prompt_tokens": 9}))

    inputs = table5_inputs(
        "alfworld", "tiny", ["sft", "eto", "hpl-semantic"], llm_model="Qwen-72B", root=tmp_path / "results"
    )
    frame = table5(inputs).set_index("Method")
    assert list(frame.index) == ["sft", "eto", "hpl-semantic"]
    assert frame.loc["sft", "Gen time"] == "0" and frame.loc["sft", "Train time"] == "18min"
    assert frame.loc["sft", "External LLM"] == "✗" and frame.loc["sft", "# LLM calls"] == 0
    assert frame.loc["eto", "gen_minutes"] == 60.0 and frame.loc["eto", "Gen time"] == "1h 0min"
    assert frame.loc["eto", "train_minutes"] == 13.0
    hpl = frame.loc["hpl-semantic"]
    assert hpl["gen_minutes"] == pytest.approx((3600 + 900 + 30 + 390) / 60)  # 82 min
    assert hpl["Gen time"] == "1h 22min" and hpl["Train time"] == "26min"
    assert hpl["# LLM calls"] == 42 and hpl["External LLM"] == "✓ (Qwen-72B)"
    assert "explore/step_rollouts: 15.00" in hpl["generation_parts"]


@pytest.mark.parametrize("copied", [True, False])
def test_table5_rft_counts_sft_training_when_it_copied_sft_model(tmp_path, copied):
    b = tmp_path / "results" / "benchmarks" / "webshop" / "tiny"
    _tsv(b / "sft" / "seed0.tsv", 2400.0)  # 40 min
    _tsv(b / "rft" / "seed0.tsv", 3.0 if copied else 2460.0)
    _tsv(b / "ref0" / "explore" / "rft_samples.tsv", 60.0)
    metrics = tmp_path / "results" / "webshop" / "tiny" / "train" / "rft" / "seed0" / "train_metrics.json"
    metrics.parent.mkdir(parents=True)
    copied_from = {"copied_from": "results/webshop/tiny/train/sft/seed0"} if copied else {}
    metrics.write_text(json.dumps({"steps": 10, **copied_from}))
    frame = table5(table5_inputs("webshop", "tiny", ["sft", "rft"], root=tmp_path / "results"))
    rft = frame.set_index("Method").loc["rft"]
    # copied: the 3 s copy plus the SFT training RFT would have repeated; trained: its own 41 min only
    assert rft["train_minutes"] == pytest.approx((2403.0 if copied else 2460.0) / 60)
    assert rft["gen_minutes"] == pytest.approx(1.0)


def test_table5_llm_calls_without_requests_key(tmp_path):
    usage = tmp_path / "u.json"
    usage.write_text(json.dumps({"calls": 5, "cache_hits": 3}))
    frame = table5({"x": {"llm_usage": [usage], "llm": "big"}})
    assert frame.iloc[0]["# LLM calls"] == 8


def test_table5_missing_file_named(tmp_path):
    missing = tmp_path / "benchmarks" / "groups" / "fixed_k.tsv"
    with pytest.raises(FileNotFoundError, match="groups/fixed_k.tsv"):
        table5({"hpl-fixed_k": {"generation": [missing], "training": []}})
    with pytest.raises(FileNotFoundError, match="nope_usage.json"):
        table5({"hpl-semantic": {"llm_usage": [tmp_path / "nope_usage.json"], "llm": "m"}})


def test_table5_inputs_layout_and_errors(tmp_path):
    inputs = table5_inputs("alfworld", "tiny", ["rft", "ipr", "hpl-fixed_n-static"], seed=1, root="r")
    # seed 1's training data came from its own pi_ref (reference_seed: each) ...
    assert [str(p) for p in inputs["rft"]["generation"]] == [
        "r/benchmarks/alfworld/tiny/ref1/explore/rft_samples.tsv"
    ]
    assert [str(p) for p in inputs["ipr"]["training"]] == ["r/benchmarks/alfworld/tiny/ipr/seed1.tsv"]
    hpl = inputs["hpl-fixed_n-static"]
    assert [str(p) for p in hpl["generation"]][2:] == [
        "r/benchmarks/alfworld/tiny/ref1/segments/fixed_n.tsv",
        "r/benchmarks/alfworld/tiny/ref1/groups/fixed_n.tsv",
    ]
    # ... or from the one shared pi_ref of a fixed reference seed
    shared = table5_inputs("alfworld", "tiny", ["ipr"], seed=1, reference_seed=0, root="r")["ipr"]
    assert [str(p) for p in shared["generation"]] == [
        "r/benchmarks/alfworld/tiny/ref0/explore/step_rollouts.tsv"
    ]
    assert [str(p) for p in shared["training"]] == ["r/benchmarks/alfworld/tiny/ipr/seed1.tsv"]
    assert hpl["llm"] is None and hpl["llm_usage"] == []
    with pytest.raises(ValueError, match="llm_model"):
        table5_inputs("alfworld", "tiny", ["hpl-semantic"])
    with pytest.raises(ValueError, match="zeroshot"):
        table5_inputs("alfworld", "tiny", ["zeroshot"])


def test_benchmark_file_without_s_column(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\n1\t2\n")
    with pytest.raises(ValueError, match="bad.tsv"):
        benchmark_seconds(bad)


def test_format_duration():
    assert [format_duration(s) for s in (0, 21.4, 1080, 4020, 22380)] == [
        "0",
        "21s",
        "18min",
        "1h 7min",
        "6h 13min",
    ]


# --- figures -------------------------------------------------------------------------------------------


def test_figure4_png_and_csv(tmp_path):
    runs = []
    for phase, rewards in [(1, [1, 0, 0]), (2, [1, 1, 0]), (3, [1, 1, 1])]:
        for seed in (0, 1):
            episodes = _episodes(rewards[: 2 + seed]) + _episodes([phase > 1], "Clean")
            runs.append(EvalRun("m", f"hpl-x.phase{phase}", seed, "alfworld", "seen", episodes))
            runs.append(
                EvalRun("m", f"hpl-x.phase{phase}", seed, "alfworld", "unseen", _episodes([phase > 2]))
            )
    phases = phase_table(runs, "hpl-x")
    png, csv = tmp_path / "fig" / "figure4.png", tmp_path / "fig" / "figure4.csv"
    figure4(phases, png, csv)
    assert png.stat().st_size > 1000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    written = pd.read_csv(csv)
    assert len(written) == len(phases)  # every row plotted once
    merged = written.merge(phases, on=["model", "phase", "split", "task_type"], suffixes=("", "_in"))
    assert len(merged) == len(phases)
    assert (merged["mean"] - merged["mean_in"]).abs().max() < 1e-9
    assert set(written["panel"]) == {"a", "b", "c"}


def test_figure5_png_and_csv_leaves_missing_out(tmp_path):
    _, long = loss_ablation_table(_ablation_runs(), "hpl-fixed_n")
    png, csv = tmp_path / "figure5.png", tmp_path / "figure5.csv"
    figure5(long, png, csv)
    assert png.stat().st_size > 1000
    written = pd.read_csv(csv)
    assert set(written["Column"]) == {
        "ALFWorld Seen",
        "ALFWorld Unseen",
        "WebShop Avg. Reward",
        "WebShop Success",
    }
    assert "InterCode-SQL Success" not in set(written["Column"])  # not run: no bar, no zero
    assert len(written) == len(long) == 4 * 2 + 2
    for (variant, column), mean in written.set_index(["Variant", "Column"])["mean"].items():
        expected = long[(long.Variant == variant) & (long.Column == column)]["mean"].item()
        assert mean == pytest.approx(expected)
