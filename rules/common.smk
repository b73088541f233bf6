# Helpers shared by the rules: settings lookups, path builders, input functions, code fingerprints.
import hashlib
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
