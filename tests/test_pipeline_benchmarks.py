"""End to end on WebShop and InterCode-SQL: the same rules with one benchmark (CI scale, SFT and ETO rows)."""

import csv
import re
import subprocess
import sys

import pytest

from hpl.admissible import lexicon_admits
from hpl.io import read_jsonl
from hpl.mirror import PROJECT_ROOT
from hpl.webshop.lexicon import instruction_words

pytestmark = pytest.mark.slow

COLUMNS = {
    "webshop": ("WebShop Avg. Reward", "WebShop Success"),
    "intercode_sql": ("InterCode-SQL Avg. Reward", "InterCode-SQL Success"),
}


def _server_processes(workdir) -> list[str]:
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout.splitlines()
    return [line for line in ps if "mariadbd" in line and str(workdir) in line]


@pytest.mark.parametrize("bench", ["webshop", "intercode_sql"])
def test_benchmark_columns_of_table1(tmp_path, bench):
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
        f"benchmarks=[{bench}]",
        "methods=[sft,eto]",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stderr[-5000:]
    with open(tmp_path / "results/table1.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["Method"] for r in rows] == ["sft", "eto"]
    for row in rows:
        for column in COLUMNS[bench]:
            assert 0.0 <= float(row[column]) <= 100.0
        assert row["ALFWorld Seen"] == "" and row["Average"] == ""  # other benchmarks not run: empty
    experts = read_jsonl(tmp_path / f"results/{bench}/expert/train.jsonl")
    assert len(experts) >= 6 and all(e["reward"] >= 0.8 for e in experts)
    episodes = read_jsonl(tmp_path / f"results/{bench}/tiny/eval/sft/seed0/test.jsonl")
    assert len(episodes) == 2 and all(1 <= e["turns"] <= 10 for e in episodes)
    if bench == "webshop":  # the embedded default's search_words reaches the environment and the table
        assert all(r["Actions"] == "admissible (instruction-word search)" for r in rows)
        for episode in episodes:
            instruction = episode["conversations"][2]["value"].split(" [SEP] ")[2]
            searches = [a[len("search[") :] for a in episode["actions"] if a and a.startswith("search[")]
            assert searches
            for query in searches:  # the reply budget may close a query inside its last word
                closed = lexicon_admits(instruction_words(instruction), query)
                words = re.findall(r"[a-z0-9]+", query.lower())[:-1]
                assert closed or set(words) <= set(re.findall(r"[a-z0-9]+", instruction.lower()))
    assert _server_processes(tmp_path) == []  # every job's SQL server stopped with its job
