"""The workflow itself: config validation before any job, the DAG, lint, environment files."""

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from hpl.benchmarks import BENCHMARKS
from hpl.mirror import ENV_VAR, PROJECT_ROOT

SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def dry_run(workdir: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = SNAKEMAKE + [
        "-n",
        "--snakefile",
        str(PROJECT_ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


def write_config(tmp_path: Path, overrides: dict) -> Path:
    path = tmp_path / "override.yaml"
    path.write_text(yaml.safe_dump(overrides))
    return path


@pytest.mark.parametrize(
    "override, named",
    [
        ({"alfworld": {"expert_sourse": "handcoded"}}, "expert_sourse"),
        ({"training": {"sft": {"lr": "fast"}}}, "fast"),
        ({"methods": ["sft", "dpo_magic"]}, "dpo_magic"),
        ({"benchmarks": ["alfwrld"]}, "alfwrld"),
        ({"models": ["tiny", "gpt5"]}, "gpt5"),
        ({"reference_seed": "every"}, "every"),
    ],
)
def test_bad_config_is_named_before_any_job(tmp_path, override, named):
    result = dry_run(tmp_path, "--configfile", str(write_config(tmp_path, override)))
    assert result.returncode != 0
    assert named in result.stderr + result.stdout
    assert not (tmp_path / "results").exists() and not (tmp_path / "resources").exists()


def _mirror_case(tmp_path: Path, case: str) -> tuple[dict, list[str], str]:
    """(environment, extra snakemake args, the path the error must name) for one bad-mirror case."""
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    if case == "env var names a missing folder":
        return {**env, ENV_VAR: "/nonexistent/mirror"}, [], "/nonexistent/mirror"
    if case == "empty mirror folder":
        (tmp_path / "empty").mkdir()
        return {**env, ENV_VAR: str(tmp_path / "empty")}, [], str(tmp_path / "empty")
    if case == "config key names a missing folder":
        override = write_config(tmp_path, {"data_mirror": "/nonexistent/mirror"})
        return env, ["--configfile", str(override)], "/nonexistent/mirror"
    # a mirror whose webshop/ folder lacks one catalogue file
    partial = tmp_path / "partial"
    for bench in ("alfworld", "webshop", "intercode_sql"):
        (partial / bench).mkdir(parents=True)
        for name in BENCHMARKS[bench].mirror_files():
            if name != "items_human_ins.json":
                (partial / bench / name).write_text("")
    return {**env, ENV_VAR: str(partial)}, [], str(partial / "webshop") + " lacks items_human_ins.json"


@pytest.mark.parametrize(
    "case",
    [
        "env var names a missing folder",
        "empty mirror folder",
        "config key names a missing folder",
        "mirror folder lacks a file",
    ],
)
def test_bad_data_mirror_fails_the_dry_run_naming_the_path(tmp_path, case):
    env, args, named = _mirror_case(tmp_path, case)
    result = dry_run(tmp_path / "work", "results/table1.csv", *args, env=env)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert named in out, out[-2000:]
    assert "alfworld-download" not in out  # never the "no mirror given" advice: a mirror was given
    assert not (tmp_path / "work" / "resources").exists()


def test_dry_run_lists_dag_from_data_to_tables(tmp_path):
    result = dry_run(tmp_path, "results/table1.csv")
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr
    for rule in ["benchmark_data", "expert", "tiny_model", "sft", "evaluate", "tables"]:
        assert re.search(rf"^rule {rule}:", out, re.M), f"rule {rule} missing from the DAG"
    assert "results/alfworld/tiny/eval/sft/seed0/unseen.jsonl" in out


def _job_inputs(dry_run_output: str, output: str) -> str:
    """The input line of the dry-run job whose output line names `output`."""
    for block in dry_run_output.split("\n\n"):
        lines = [line.strip() for line in block.splitlines()]
        if any(line.startswith("output:") and output in line for line in lines):
            return next(line for line in lines if line.startswith("input:"))
    raise AssertionError(f"no job writes {output}")


@pytest.mark.parametrize("reference_seed", ["each", 0])
def test_reference_seed_sets_whose_data_each_seed_trains_on(tmp_path, reference_seed):
    """`each`: seed 1's ETO starts from SFT seed 1 and its own exploration (ref1/); a number: every seed
    starts from that SFT seed and shares its one exploration."""
    override = write_config(
        tmp_path,
        {
            "benchmarks": ["webshop"],
            "methods": ["sft", "eto"],
            "seeds": [0, 1],
            "reference_seed": reference_seed,
        },
    )
    result = dry_run(tmp_path, "results/table1.csv", "--configfile", str(override))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    ref = 1 if reference_seed == "each" else 0
    eto = _job_inputs(out, "results/webshop/tiny/train/eto/seed1")
    assert f"results/webshop/tiny/ref{ref}/pairs/traj.jsonl" in eto
    assert re.findall(r"train/sft/seed(\d+)", eto) == [str(ref)]  # pi_ref
    explore = _job_inputs(out, f"results/webshop/tiny/ref{ref}/explore/trajectories.jsonl")
    assert re.findall(r"train/sft/seed(\d+)", explore) == [str(ref)]
    explorations = re.findall(r"output: results/webshop/tiny/ref(\d)/explore/trajectories.jsonl", out)
    assert sorted(explorations) == (["0", "1"] if reference_seed == "each" else ["0"])


def test_paper_preset_is_valid(tmp_path):
    preset = PROJECT_ROOT / "config" / "presets" / "paper.yaml"
    result = dry_run(
        tmp_path, "results/table1.csv", "--configfile", str(preset)
    )  # targets first: --configfile takes a list
    assert result.returncode == 0, result.stderr
    assert "results/alfworld/qwen2.5-7b/eval/sft/seed2/seen.jsonl" in result.stdout + result.stderr


def test_paper_preset_trains_with_the_paper_hyperparameters_on_every_benchmark():
    """The preset sits on top of the embedded config: per-benchmark training keys the embedded default sets
    for the tiny model (e.g. webshop.sft_epochs) must not reach the paper's runs."""
    from snakemake.utils import update_config

    merged = yaml.safe_load((PROJECT_ROOT / "config" / "config.yaml").read_text())
    update_config(merged, yaml.safe_load((PROJECT_ROOT / "config" / "presets" / "paper.yaml").read_text()))
    assert merged["training"]["sft"]["epochs"] == 3 and merged["training"]["dpo"]["lr"] == 3.0e-6
    for bench in ("alfworld", "webshop", "intercode_sql"):
        assert merged[bench]["sft_epochs"] is None, bench  # training.sft.epochs: the paper's 3
        assert merged[bench]["train_tasks"] is None, bench
    assert merged["alfworld"]["dpo_lr"] is None  # training.dpo.lr: the paper's 3e-6 on ALFWorld
    assert merged["webshop"]["dpo_lr"] == merged["intercode_sql"]["dpo_lr"] == 1.0e-6
    # the paper's expert data and free-text actions, whatever the embedded default chose for the tiny model
    assert (
        merged["intercode_sql"]["expert_source"] == "gpt4+gold" and merged["generation"]["actions"] == "free"
    )


def test_lint_is_clean():
    result = subprocess.run(
        SNAKEMAKE + ["--lint"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0
    assert "Lints for" not in result.stdout + result.stderr


def _name(requirement: str) -> str:
    return re.split(r"[<>=!\[ ;@]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_conda_envs_agree_with_pyproject():
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    declared = {_name(r): r for r in project["project"]["dependencies"]}
    for env_file in (PROJECT_ROOT / "envs").glob("*.yaml"):
        env = yaml.safe_load(env_file.read_text())
        pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
        for requirement in pip:
            assert _name(requirement) in declared, f"{env_file.name}: {requirement} not in pyproject"
            assert requirement.replace(" ", "") == declared[_name(requirement)].replace(" ", ""), (
                f"{env_file.name}: {requirement} differs from pyproject's {declared[_name(requirement)]}"
            )


def test_style_ruff_and_snakefmt_clean():
    ruff = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "hpl", "scripts", "tests", "benchmarks"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ruff.returncode == 0, ruff.stdout[-2000:]
    snakefmt = subprocess.run(
        [sys.executable, "-m", "snakefmt", "--check", "Snakefile", "rules"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert snakefmt.returncode == 0, snakefmt.stderr[-2000:]
