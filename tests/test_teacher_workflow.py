"""The workflow side of expert sources and zero-shot rows: which rule makes the expert data, a zero-shot
evaluation without any training job, config errors before any job, a real import through Snakemake, and
(slow) teacher expert data plus a zero-shot SmolLM2 row of table1 end to end on WebShop."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hpl.io import read_json, read_jsonl
from hpl.mirror import PROJECT_ROOT

SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(PROJECT_ROOT / "Snakefile")]


def snakemake(workdir: Path, *args: str, overrides: dict | None = None, timeout: int = 300):
    cmd = SNAKEMAKE + ["--directory", str(workdir), *args]
    if overrides is not None:
        path = workdir / "override.yaml"
        path.write_text(yaml.safe_dump(overrides))
        cmd += ["--configfile", str(path)]  # last: --configfile takes a list
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def jobs(output: str) -> dict[str, list[str]]:
    """rule name -> the output files of its jobs, from a dry run's listing."""
    found: dict[str, list[str]] = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        match = re.match(r"(?:local)?rule (\w+):", block)
        out = re.search(r"^\s+output: (.*)$", block, re.M)
        if match and out:
            found.setdefault(match[1], []).append(out[1])
    return found


def test_default_config_keeps_its_methods_and_expert_sources():
    config = yaml.safe_load((PROJECT_ROOT / "config/config.yaml").read_text())
    assert config["methods"] == [
        "sft",
        "rft",
        "eto",
        "ipr",
        "hpl-fixed_n",
        "hpl-fixed_k",
        "hpl-uncertainty",
        "hpl-semantic",
    ]
    assert [config[b]["expert_source"] for b in config["benchmarks"]] == [
        "handcoded",
        "oracle",
        "schema_gold",
    ]
    assert config["method_specs"]["zeroshot-smollm2"]["kind"] == "zeroshot"  # ready, not listed


def test_each_expert_source_has_its_rule_and_zero_shot_rows_train_nothing(tmp_path):
    (tmp_path / "eto").mkdir()
    (tmp_path / "eto/alfworld_sft.json").write_text("[]")
    overrides = {
        "alfworld": {"expert_source": "import", "expert_file": "eto/alfworld_sft.json"},
        "webshop": {"expert_source": "teacher"},
        "methods": ["sft", "zeroshot-smollm2", "zeroshot-base"],
        "method_specs": {"zeroshot-base": {"kind": "zeroshot"}},
        "seeds": [0, 1],
    }
    result = snakemake(tmp_path, "-n", "results/table1.csv", overrides=overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    found = jobs(result.stdout)
    assert found["expert_import"] == [
        "results/alfworld/expert/train.jsonl, results/alfworld/expert/card.json"
    ]
    assert found["expert_teacher"] == [
        "results/webshop/expert/train.jsonl, results/webshop/expert/card.json, "
        "results/webshop/expert/usage.json"
    ]
    assert found["expert"] == [
        "results/intercode_sql/expert/train.jsonl, results/intercode_sql/expert/card.json"
    ]
    evaluations = found["evaluate"]
    zeroshot = [e for e in evaluations if "/zeroshot-" in e]
    # one evaluation per benchmark split and zero-shot method: seed 0 only (nothing differs between seeds)
    assert sorted(zeroshot) == sorted(
        f"results/{b}/tiny/eval/{m}/seed0/{s}.jsonl"
        for m in ("zeroshot-smollm2", "zeroshot-base")
        for b, s in [
            ("alfworld", "seen"),
            ("alfworld", "unseen"),
            ("webshop", "test"),
            ("intercode_sql", "test"),
        ]
    )
    assert len(evaluations) - len(zeroshot) == 8  # sft: 4 splits x 2 seeds
    # no training job for a zero-shot method: SFT (two seeds, three benchmarks) is the only training
    assert len(found["sft"]) == 6
    assert not any("/train/zeroshot" in out for outs in found.values() for out in outs)

    # an endpoint row evaluates without even the benchmark's expert data
    result = snakemake(
        tmp_path, "-n", "results/webshop/tiny/eval/zeroshot-smollm2/seed0/test.jsonl", overrides=overrides
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert set(jobs(result.stdout)) == {"benchmark_data", "evaluate"}


def test_missing_import_file_is_named_before_any_job(tmp_path):
    overrides = {"webshop": {"expert_source": "import", "expert_file": "eto/webshop_sft.json"}}
    result = snakemake(tmp_path, "-n", "results/table1.csv", overrides=overrides)
    assert result.returncode != 0
    assert "webshop.expert_file: expert file not found: eto/webshop_sft.json" in result.stdout + result.stderr
    overrides["webshop"] = {"expert_source": "teacher", "expert_file": None}
    overrides["teacher"] = {"max_concurency": 2}
    result = snakemake(tmp_path, "-n", "results/table1.csv", overrides=overrides)
    assert result.returncode != 0 and "max_concurency" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


def test_import_through_snakemake(tmp_path, webshop_mirror):
    """A real run of the import rule: an ETO-format WebShop file from this project's oracle, one bad row."""
    from hpl.envs import make_env
    from hpl.webshop.expert import collect_expert

    records, _ = collect_expert(make_env("webshop", data_dir=webshop_mirror), ["ws-200", "ws-201", "ws-202"])
    rows = [
        {"id": int(r["id"][3:]), "conversations": r["conversations"], "reward": r["reward"]} for r in records
    ]
    rows.append({"id": 7, "conversations": records[0]["conversations"], "reward": 1.0})  # a test goal
    (tmp_path / "eto").mkdir()
    (tmp_path / "eto/webshop_sft.json").write_text(json.dumps(rows))
    overrides = {
        "benchmarks": ["webshop"],
        "webshop": {"expert_source": "import", "expert_file": "eto/webshop_sft.json"},
    }
    result = snakemake(tmp_path, "--cores", "1", "results/webshop/expert/train.jsonl", overrides=overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    imported = read_jsonl(tmp_path / "results/webshop/expert/train.jsonl")
    assert [r["id"] for r in imported] == [r["id"] for r in records]
    card = read_json(tmp_path / "results/webshop/expert/card.json")
    assert card["kept"] == len(records) and card["problems"][0]["row"] == len(records)
    assert "test goal" in card["problems"][0]["reason"]
    assert "not imported: ws-7 is a test goal" in (tmp_path / "logs/webshop/expert.log").read_text()


@pytest.mark.slow
def test_teacher_expert_data_and_a_zero_shot_row(tmp_path):
    """Tiny scale on WebShop with the local SmolLM2 server: teacher expert data (card, usage) and the
    zero-shot SmolLM2 row of table1; a forced rerun of the teacher job makes zero calls (cache)."""
    overrides = {
        "benchmarks": ["webshop"],
        "methods": ["zeroshot-smollm2"],
        "webshop": {"expert_source": "teacher", "train_tasks": 2, "eval_tasks": {"test": 2}, "max_turns": 2},
        "teacher": {"max_tokens": 32, "max_concurrency": 2},
        "method_specs": {
            "zeroshot-smollm2": {
                "kind": "zeroshot",
                "endpoint": {"base_url": None, "model": None, "max_tokens": 32, "max_concurrency": 2},
            }
        },
        "generation": {"max_new_tokens": 32, "max_prompt_tokens": 1024, "parallel_episodes": 2},
    }
    targets = ["results/table1.csv", "results/webshop/expert/train.jsonl"]
    result = snakemake(tmp_path, "--cores", "2", *targets, overrides=overrides, timeout=1500)
    assert result.returncode == 0, result.stderr[-5000:]

    card = read_json(tmp_path / "results/webshop/expert/card.json")
    usage = read_json(tmp_path / "results/webshop/expert/usage.json")
    assert card["source"] == "teacher" and card["attempted"] == 2 and card["keep_threshold"] == 0.8
    assert card["teacher"]["model"].startswith("SmolLM2") and card["endpoint"].startswith("local")
    assert usage["calls"] == card["llm"]["calls"] >= 2 and usage["requests"] == usage["calls"]
    kept = read_jsonl(tmp_path / "results/webshop/expert/train.jsonl")
    assert len(kept) == card["kept"] and all(r["reward"] >= 0.8 for r in kept)
    assert (tmp_path / "results/benchmarks/webshop/expert.tsv").exists()

    with open(tmp_path / "results/table1.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["Model"], r["Method"]) for r in rows] == [("tiny", "zeroshot-smollm2")]
    assert 0.0 <= float(rows[0]["WebShop Avg. Reward"]) <= 100.0 and rows[0]["ALFWorld Seen"] == ""
    episodes = read_jsonl(tmp_path / "results/webshop/tiny/eval/zeroshot-smollm2/seed0/test.jsonl")
    assert len(episodes) == 2 and all(1 <= e["turns"] <= 2 for e in episodes)
    assert not (tmp_path / "results/webshop/tiny/train").exists()  # nothing was trained

    # (the target before --forcerun: both options take lists)
    result = snakemake(
        tmp_path, targets[1], "--cores", "1", "--forcerun", "expert_teacher", overrides=overrides, timeout=900
    )
    assert result.returncode == 0, result.stderr[-5000:]
    again = read_json(tmp_path / "results/webshop/expert/usage.json")
    assert again["calls"] == 0 and again["cache_hits"] == usage["requests"]
    evaluation = (
        tmp_path / "results/benchmarks/webshop/tiny/eval/zeroshot-smollm2/seed0/test.tsv"
    ).read_text()
    expert = (tmp_path / "results/benchmarks/webshop/expert.tsv").read_text()
    print("\nteacher card:", json.dumps({k: card[k] for k in ("attempted", "kept", "success_rate", "llm")}))
    print(
        "zero-shot row:", rows[0], "\nexpert rerun benchmark:", expert, "\nevaluation benchmark:", evaluation
    )
