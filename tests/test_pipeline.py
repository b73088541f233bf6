"""End to end: snakemake on the CI-scale config (real ALFWorld, tiny model, a few training steps)."""

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hpl.io import read_jsonl
from hpl.mirror import PROJECT_ROOT

pytestmark = pytest.mark.slow

CI_CONFIG = PROJECT_ROOT / "config" / "presets" / "ci.yaml"


METHODS = ["sft", "rft", "eto", "ipr", "hpl-fixed_n", "hpl-fixed_k", "hpl-uncertainty", "hpl-semantic"]
SEGMENTERS = ["fixed_n", "fixed_k", "uncertainty", "semantic"]


def snakemake(
    workdir: Path, *args: str, timeout: int = 1500, check: bool = True, override: dict | None = None
) -> subprocess.CompletedProcess:
    """Run snakemake on the CI preset (plus `override`, a config layered over it) in `workdir`."""
    configs = [str(CI_CONFIG)]
    if override:  # a YAML file: --config would pass nested values as strings
        extra = workdir / "override.yaml"
        extra.write_text(yaml.safe_dump(override))
        configs.append(str(extra))
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(PROJECT_ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        "--cores",
        "2",
        *args,
        "--configfile",
        *configs,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("pipeline")
    snakemake(workdir)  # rule all: every table and figure
    return workdir


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_table1_has_a_row_per_method_with_alfworld_cells(run):
    rows = _csv(run / "results" / "table1.csv")
    assert [(r["Model"], r["Method"]) for r in rows] == [("tiny", m) for m in METHODS]
    for row in rows:
        assert row["Actions"] == "admissible"  # the embedded default's generation.actions on ALFWorld
        for column in ["ALFWorld Seen", "ALFWorld Unseen"]:
            assert 0.0 <= float(row[column]) <= 100.0
        for column in [
            "WebShop Avg. Reward",
            "WebShop Success",
            "InterCode-SQL Avg. Reward",
            "InterCode-SQL Success",
            "Average",
        ]:
            assert row[column] == ""  # not run: empty, not zero
    # every other method against SFT, on the ALFWorld columns only; one seed: no spread, no verdict
    versus = _csv(run / "results" / "table1_vs_sft.csv")
    assert {(r["Method"], r["Column"]) for r in versus} == {
        (m, c) for m in METHODS if m != "sft" for c in ["ALFWorld Seen", "ALFWorld Unseen"]
    }
    assert all(r["beyond_one_std"] == "" for r in versus)


def test_exploration_and_pairs(run):
    model = run / "results/alfworld/tiny"
    experts = {r["id"] for r in read_jsonl(run / "results/alfworld/expert/train.jsonl")}
    explored = read_jsonl(model / "ref0/explore/trajectories.jsonl")
    assert {r["id"] for r in explored} == experts  # one pi_ref trajectory per training task
    values = read_jsonl(model / "ref0/explore/step_values.jsonl")
    assert values and all(0.0 <= v["value"] <= 1.0 and len(v["rewards"]) == 2 for v in values)
    for level in ["traj", "step"]:
        report = json.loads((model / f"ref0/pairs/{level}_report.json").read_text())
        pairs = read_jsonl(model / f"ref0/pairs/{level}.jsonl")
        assert report["kept"] == len(pairs) <= report["candidates"]
        for pair in pairs:
            assert pair["prompt"][-1]["from"] == "human" and pair["chosen"][-1]["from"] == "gpt"
    for method in ["eto", "ipr"]:
        metrics = json.loads((model / f"train/{method}/seed0/train_metrics.json").read_text())
        assert metrics["steps"] >= 1 and metrics["reference"].endswith("train/sft/seed0")


def test_rft_trains_only_when_pi_ref_added_a_success(run):
    """RFT = expert data + pi_ref's successful samples; with none it is SFT's training again, so the job
    copies SFT's model instead (the same weights; docs/performance.md)."""
    model = run / "results/alfworld/tiny"
    successes = [r for r in read_jsonl(model / "ref0/explore/rft_samples.jsonl") if r["success"]]
    metrics = json.loads((model / "train/rft/seed0/train_metrics.json").read_text())
    sft = json.loads((model / "train/sft/seed0/train_metrics.json").read_text())
    if successes:
        assert "copied_from" not in metrics and metrics["examples"] == sft["examples"] + len(successes)
    else:
        assert metrics["copied_from"].endswith("train/sft/seed0")
        weights = [(model / f"train/{m}/seed0/model.safetensors").read_bytes() for m in ("sft", "rft")]
        assert weights[0] == weights[1]


def test_type_tables_and_episode_rows(run):
    for table in ["table6.csv", "table7.csv"]:
        header = list(_csv(run / "results" / table)[0])
        assert header == ["Model", "Method", "Pick", "Clean", "Heat", "Cool", "Examine", "Pick2", "All"]
    episodes = read_jsonl(run / "results/alfworld/tiny/eval/sft/seed0/unseen.jsonl")
    assert len(episodes) == 2
    for ep in episodes:
        assert ep["task_id"].startswith("valid_unseen/")
        assert ep["task_type"] in {"Pick", "Clean", "Heat", "Cool", "Examine", "Pick2"}
        assert 1 <= ep["turns"] <= 15 and len(ep["actions"]) == ep["turns"]
        assert ep["invalid_actions"] == 0 and ep["action_mode"] == "admissible"  # valid by construction
        assert ep["reward"] in (0.0, 1.0) and ep["success"] == (ep["reward"] == 1.0)


def test_expert_data_card_logs_and_benchmarks(run):
    card = json.loads((run / "results/alfworld/expert/card.json").read_text())
    experts = read_jsonl(run / "results/alfworld/expert/train.jsonl")
    assert card["trajectories_kept"] == len(experts) >= 1
    assert all(e["reward"] == 1.0 for e in experts)
    assert (run / "results/alfworld/tiny/train/sft/seed0/train_metrics.json").exists()
    assert (run / "logs/alfworld/tiny/sft/seed0.log").stat().st_size > 0
    assert (run / "results/benchmarks/alfworld/tiny/sft/seed0.tsv").exists()


def test_hpl_branch_segments_groups_curriculum_phases(run):
    model = run / "results/alfworld/tiny"
    for segmenter in SEGMENTERS:
        rows = read_jsonl(model / f"ref0/segments/{segmenter}.jsonl")
        assert len(rows) == 3  # groups.tasks in the CI preset
        for row in rows:  # contiguous inclusive [start, end] pairs covering every action
            flat = [i for start, end in row["segments"] for i in range(start, end + 1)]
            assert flat == list(range(row["n_actions"]))
        table = read_jsonl(model / f"ref0/groups/{segmenter}.jsonl")
        assert table and all(0.0 <= r["expert_mc"] <= 1.0 for r in table)
        grid = json.loads((model / f"ref0/curriculum/{segmenter}_grid.json").read_text())
        pairs = read_jsonl(model / f"ref0/curriculum/{segmenter}.jsonl")
        assert sum(sum(row.values()) for row in grid["buckets"].values()) == len(pairs)
        for pair in pairs:
            assert pair["difficulty"] > 0.3 and pair["chosen_mc"] >= 0.8 and pair["group_length"] >= 1
            assert pair["length_level"] in (1, 2, 3) and pair["difficulty_level"] in (1, 2, 3)
    usage = json.loads((model / "ref0/segments/semantic_usage.json").read_text())
    assert usage["requests"] == 3  # one LLM request per segmented trajectory (n >= 2 actions)
    for phase in (1, 2, 3):
        assert (model / f"train/hpl-semantic/seed0/phase{phase}/train_metrics.json").exists()


def test_report_targets(run):
    results = run / "results"
    table2 = _csv(results / "table2.csv")
    assert len(table2) == 4 and all(0 <= float(r["ALFWorld Seen"]) <= 100 for r in table2)
    for figure in ["figure4", "figure5"]:
        assert (results / f"{figure}.png").stat().st_size > 1000
        assert _csv(results / f"{figure}.csv")
    table5 = _csv(results / "table5.csv")
    assert [r["Method"] for r in table5] == METHODS
    semantic = next(r for r in table5 if r["Method"] == "hpl-semantic")
    assert int(semantic["# LLM calls"]) == 3 and float(semantic["train_minutes"]) > 0


def test_html_report_holds_every_table_and_figure_with_its_caption(run):
    report = run / "report.html"
    snakemake(run, "--report", str(report))
    html = report.read_text()
    for caption in sorted((PROJECT_ROOT / "report").glob("*.rst")):
        first_words = " ".join(caption.read_text().split()[:4])
        if caption.name != "workflow.rst":  # that one is a Jinja template, rendered with the config
            assert first_words in html, f"{caption.name} missing from the report"
    for name in ["table1.csv", "table2.csv", "table5.csv", "figure4.png", "figure5.png", "figure4.csv"]:
        assert name in html


def _dry_run_with_a_line_added(run: Path, tmp_path: Path, mirror: Path, module: str) -> str:
    """`snakemake -n` on the finished run from a copy of the workflow with one line appended to `module`."""
    copy = tmp_path / "workflow"
    shutil.copytree(
        PROJECT_ROOT,
        copy,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "results", "resources", "logs", ".snakemake", "__pycache__"
        ),
    )
    with open(copy / module, "a") as handle:
        handle.write("\n# a change\n")
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-n",
        "--snakefile",
        str(copy / "Snakefile"),
        "--directory",
        str(run),
        "--cores",
        "2",
        "--configfile",
        str(copy / "config/presets/ci.yaml"),
    ]
    result = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HPL_DATA_MIRROR": str(mirror.parent)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def _planned(out: str) -> list[tuple[str, dict]]:
    """The jobs a dry run plans: (rule, wildcards)."""
    jobs = []
    for rule, body in re.findall(r"^(?:local)?rule (\w+):\n((?:    .*\n)*)", out, re.M):
        found = re.search(r"wildcards: (.*)", body)
        pairs = [item.split("=", 1) for item in found.group(1).split(", ")] if found else []
        jobs.append((rule, dict(pairs)))
    return jobs


NOTHING = "Nothing to be done"
REPORTS = {"tables", "table2", "table5", "figure4", "figure5", "all"}


def test_changing_one_segmenter_reruns_only_its_branch(run, tmp_path, alfworld_mirror):
    # a setting: the semantic segmenter's fallback
    override = {"segmenters": {"semantic": {"kind": "semantic", "fallback_k": 2}}}
    out = snakemake(run, "-n", override=override).stdout
    _assert_only_semantic_branch(out)
    # its code: the same workflow with one line added to hpl/segmenters/semantic.py
    out = _dry_run_with_a_line_added(run, tmp_path, alfworld_mirror, "hpl/segmenters/semantic.py")
    _assert_only_semantic_branch(out)


@pytest.mark.parametrize(
    "override",
    [
        {"exploration": {"lanes": 3}},
        {"generation": {"parallel_episodes": 2, "prefix_cache": False}},
        {"generation": {"shards": 2}},
        {"intercode_sql": {"server": {"password": "changed"}}},
        {"llm": {"cache": "resources/another_cache"}},
    ],
    ids=["lanes", "parallel_episodes+prefix_cache", "shards", "sql_password", "llm_cache"],
)
def test_speed_and_connection_settings_rerun_nothing(run, override):
    out = snakemake(run, "-n", override=override).stdout
    assert NOTHING in out, _planned(out)


def test_a_dpo_learning_rate_reruns_only_preference_training(run):
    out = snakemake(run, "-n", override={"alfworld": {"dpo_lr": 5.0e-5}}).stdout
    jobs = _planned(out)
    trained = {wc["method"] for rule, wc in jobs if rule in ("dpo", "hpl")}
    # every preference method the run trained: Table 1's and the ablations' (rule all)
    specs = yaml.safe_load((PROJECT_ROOT / "config/config.yaml").read_text())["method_specs"]
    assert trained == {name for name, spec in specs.items() if spec["kind"] in ("dpo", "hpl")}
    assert {"eto", "ipr", "hpl-semantic", "hpl-semantic-no_group"} <= trained
    for rule, wc in jobs:
        assert rule in {"dpo", "hpl", "evaluate"} | REPORTS, f"{rule} {wc} reran (upstream of pi_ref?)"
        if rule == "evaluate":
            assert wc["method"].split(".phase")[0] in trained, f"evaluation of {wc['method']} reran"


def test_a_benchmarks_explore_tasks_rerun_exploration_and_what_it_feeds(run):
    # alfworld.explore_tasks overrides exploration.tasks for ALFWorld: pi_ref (SFT) and the expert data stay
    out = snakemake(run, "-n", override={"alfworld": {"explore_tasks": 5}}).stdout
    rules = {rule for rule, _ in _planned(out)}
    assert {"explore", "rft_samples", "step_rollouts", "segment", "groups", "dpo", "hpl"} <= rules
    assert not rules & {"expert", "tiny_model", "sft"}, rules


def test_a_code_edit_reruns_the_jobs_that_import_it(run, tmp_path, alfworld_mirror):
    # hpl/pairs.py builds the rollout states and the pairs: those jobs and what they feed, nothing upstream
    jobs = _planned(_dry_run_with_a_line_added(run, tmp_path / "pairs", alfworld_mirror, "hpl/pairs.py"))
    rules = {rule for rule, _ in jobs}
    assert {"traj_pairs", "step_pairs", "step_rollouts", "groups", "curriculum", "dpo", "hpl"} <= rules
    assert {rule for rule, _ in jobs} <= {
        "traj_pairs",
        "step_pairs",
        "step_rollouts",
        "groups",
        "curriculum",
        "dpo",
        "hpl",
        "evaluate",
    } | REPORTS
    assert {wc["segmenter"] for rule, wc in jobs if rule == "groups"} == set(SEGMENTERS)
    assert not {wc["method"] for rule, wc in jobs if rule == "evaluate"} & {"sft", "rft"}
    # another benchmark's module: the ALFWorld run has nothing to redo
    out = _dry_run_with_a_line_added(run, tmp_path / "webshop", alfworld_mirror, "hpl/webshop/reward.py")
    assert NOTHING in out, _planned(out)


def _assert_only_semantic_branch(out: str) -> None:
    jobs = _planned(out)
    assert {"segment", "groups", "curriculum", "hpl", "evaluate", "tables"} <= {rule for rule, _ in jobs}
    for rule, wc in jobs:
        if rule in ("segment", "groups", "curriculum"):
            assert wc["segmenter"] == "semantic", f"{rule} reran for {wc}"
        elif rule in ("hpl", "evaluate"):
            assert wc["method"].startswith("hpl-semantic"), f"{rule} reran for {wc}"
        else:
            assert rule in REPORTS, f"{rule} should not rerun"


def test_killed_evaluation_resumes_without_redoing_episodes(run):
    target = run / "results/alfworld/tiny/eval/sft/seed0/seen.jsonl"
    finished = read_jsonl(target)
    # as if the job had been killed after two episodes: the partial log remains, the output does not
    partial = target.with_name(target.name + ".partial")
    partial.write_text("".join(json.dumps(r) + "\n" for r in finished[:1]))
    target.unlink()
    log = run / "logs/alfworld/tiny/eval/sft/seed0/seen.log"
    log.unlink()
    snakemake(run, str(target.relative_to(run)))
    assert "2 episodes, 1 already done" in log.read_text()
    again = read_jsonl(target)
    assert [r["task_id"] for r in again] == [r["task_id"] for r in finished]
    assert again[:1] == finished[:1]
    assert not partial.exists()


def test_no_pair_passing_leaves_pi_ref_with_the_counts(run):
    # an impossible MC gap: every step candidate fails it. DPO on no pair is pi_ref (zero steps): the job
    # copies it, and its log and metrics say which threshold removed the candidates
    result = snakemake(
        run,
        "results/alfworld/tiny/train/ipr/seed0",
        override={"pairs": {"traj_min_gap": 0.01, "step_final_gap": 0.01, "step_mc_gap": 5.0}},
    )
    assert result.returncode == 0
    log = (run / "logs/alfworld/tiny/ipr/seed0.log").read_text()
    assert "no step pair passed the thresholds" in log and "failed MC value gap > 5.0" in log
    assert "the model is pi_ref" in log
    ipr, ref = run / "results/alfworld/tiny/train/ipr/seed0", run / "results/alfworld/tiny/train/sft/seed0"
    metrics = json.loads((ipr / "train_metrics.json").read_text())
    assert metrics["skipped"] and metrics["copied_from"].endswith("train/sft/seed0")
    assert "failed MC value gap > 5.0" in metrics["no_pairs"]["step"]
    assert (ipr / "model.safetensors").read_bytes() == (ref / "model.safetensors").read_bytes()


def test_sharded_generation_equals_the_unsharded_run(run):
    # kept last in this module: it replaces generation outputs of the shared run with their gathered twins
    model = run / "results/alfworld/tiny"
    names = [
        "ref0/explore/trajectories.jsonl",
        "ref0/explore/step_continuations.jsonl",
        "ref0/explore/step_values.jsonl",
        "ref0/explore/step_records.jsonl",
        "eval/sft/seed0/unseen.jsonl",
    ]
    unsharded = {name: (model / name).read_text() for name in names}
    for name in names:
        (model / name).unlink()
    targets = [str((model / name).relative_to(run)) for name in names]
    snakemake(run, *targets, override={"generation": {"shards": 2}})
    for name in names:
        stem = name.removesuffix(".jsonl")
        assert sorted(p.name for p in model.glob(f"{stem}.shard*.jsonl")) == [
            f"{Path(stem).name}.shard{i}of2.jsonl" for i in range(2)
        ]
        assert (model / name).read_text() == unsharded[name], f"{name} differs from the unsharded run"
    # the gathered files keep their shards: another shard count, or none, re-plans nothing
    for shards in (1, 3):
        out = snakemake(run, "-n", *targets, override={"generation": {"shards": shards}}).stdout
        assert NOTHING in out, (shards, _planned(out))
