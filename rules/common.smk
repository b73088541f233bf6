# Helpers shared by the rules: settings lookups, path builders, input functions, code fingerprints.
import hashlib
import re
import sys
from pathlib import Path

sys.path.insert(0, workflow.basedir)  # the workflow's own hpl/, as in scripts/

from hpl.benchmarks import BENCHMARKS, check_config


check_config(config)


wildcard_constraints:
    bench="|".join(BENCHMARKS),
    model=r"[A-Za-z0-9_.-]+",
    method=r"[a-z0-9_-]+",
    seed=r"\d+",
    split=r"[a-z_]+",


def code_version(*modules):
    """Hash of library files a rule depends on, passed as a param so a code change reruns the rule."""
    digest = hashlib.sha256()
    for module in modules:
        for path in sorted(Path(workflow.basedir, "hpl").glob(module)):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def bench_code(*modules):
    """Input function: code version of `modules` plus the benchmark's own engine files."""
    return lambda wc: code_version("benchmarks.py", "envs/base.py", *BENCHMARKS[wc.bench].code, *modules)


def model_spec(model):
    return config["model_specs"][model]


def base_model(wildcards):
    """The model every training stage starts from: built here (tiny) or a local path / hub id."""
    spec = model_spec(wildcards.model)
    if spec["kind"] == "tiny":
        return f"results/{wildcards.bench}/{wildcards.model}/base"
    return []


def base_model_path(wildcards, input):
    spec = model_spec(wildcards.model)
    return input.base if spec["kind"] == "tiny" else spec["path"]


def checkpoint(bench, model, method, seed):
    """The trained checkpoint a method's evaluation loads."""
    return f"results/{bench}/{model}/train/{method}/seed{seed}"


def eval_splits(bench):
    return BENCHMARKS[bench].eval_splits


def eval_files():
    return [
        f"results/{bench}/{model}/eval/{method}/seed{seed}/{split}.jsonl"
        for bench in config["benchmarks"]
        for model in config["models"]
        for method in config["methods"]
        for seed in config["seeds"]
        for split in eval_splits(bench)
    ]


def tables():
    outputs = ["results/table1.csv"]
    if "alfworld" in config["benchmarks"]:
        outputs += ["results/table6.csv", "results/table7.csv"]
    return outputs


def method_spec(method):
    return config["method_specs"][method]


def methods_of_kind(kind):
    return [m for m in config["methods"] if method_spec(m)["kind"] == kind]


def one_of(names):
    """A wildcard regex matching exactly `names` (or nothing when empty)."""
    return "|".join(map(re.escape, names)) if names else "(?!x)x"


def reference(wildcards):
    """pi_ref: the SFT checkpoint of the reference seed."""
    return f"results/{wildcards.bench}/{wildcards.model}/train/sft/seed{config['reference_seed']}"


def pair_files(wildcards):
    """The pair files a DPO method trains on, one per level of its spec."""
    levels = method_spec(wildcards.method)["levels"]
    return {level: f"results/{wildcards.bench}/{wildcards.model}/pairs/{level}.jsonl" for level in levels}
