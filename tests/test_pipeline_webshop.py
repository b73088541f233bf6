"""End to end on WebShop: the same rules with `benchmarks: [webshop]` (CI scale, SFT and ETO rows)."""

import csv
import subprocess
import sys

import pytest

from hpl.io import read_jsonl
from hpl.mirror import PROJECT_ROOT

pytestmark = pytest.mark.slow


def test_webshop_columns_of_table1(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(PROJECT_ROOT / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--cores",
        "2",
        "results/table1.csv",
        "--configfile",
        str(PROJECT_ROOT / "config/presets/ci.yaml"),
        "--config",
        "benchmarks=[webshop]",
        "methods=[sft,eto]",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stderr[-5000:]
    with open(tmp_path / "results/table1.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["Method"] for r in rows] == ["sft", "eto"]
    for row in rows:
        assert (
            0.0 <= float(row["WebShop Avg. Reward"]) <= 100.0
            and 0.0 <= float(row["WebShop Success"]) <= 100.0
        )
        assert row["ALFWorld Seen"] == "" and row["InterCode-SQL Success"] == ""
    experts = read_jsonl(tmp_path / "results/webshop/expert/train.jsonl")
    assert len(experts) >= 6 and all(e["reward"] >= 0.8 for e in experts)  # the oracle, kept at >= 0.8
    episodes = read_jsonl(tmp_path / "results/webshop/tiny/eval/sft/seed0/test.jsonl")
    assert len(episodes) == 2 and all(1 <= e["turns"] <= 10 for e in episodes)
