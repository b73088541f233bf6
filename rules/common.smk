# Helpers shared by the rules: settings lookups, path builders, input functions, code fingerprints.
import functools
import re
import sys
from pathlib import Path

sys.path.insert(0, workflow.basedir)  # the workflow's own hpl/, as in scripts/

from hpl.benchmarks import BENCHMARKS, check_config, check_mirrors, training_hparams
from hpl.context import context_settings
from hpl.endpoint import model_label, result_settings
from hpl.fingerprint import fingerprint
from hpl.segmenters import MODULES as SEGMENTER_MODULES
from hpl.sharding import planned_shards
from hpl.settings import (
    EpisodeSettings,
    ExpertSettings,
    GenerationSettings,
    NegativeSettings,
    RolloutSettings,
    explored_tasks,
    params,
    reference_seed,
)
from hpl.expert_import import check_import_config

check_config(config)
# a configured data mirror that is missing or incomplete is named before any job (docs/data.md)
check_mirrors(config)
# an `expert_source: import` file that is not there is named before any job
check_import_config(config)


HPL = Path(workflow.basedir, "hpl")
# generation.shards > 1: each generation job still to be made runs as that many shard jobs, which the job
# itself then gathers (hpl.sharding); a finished job keeps the shards it was gathered from
SHARDS = config["generation"].get("shards", 1)
STEP_FILES = ("continuations", "values", "records")  # the step-level rollouts' outputs


wildcard_constraints:
    shard=r"\d+",
    shards=r"\d+",
    bench="|".join(BENCHMARKS),
    model=r"[A-Za-z0-9_.-]+",
    method=r"[a-z0-9_-]+(\.phase[123])?",
    seed=r"\d+",
    ref=r"\d+",
    split=r"[a-z_]+",
    segmenter=r"[a-z0-9_]+",


@functools.lru_cache(maxsize=None)
def _fingerprint(script, own, others):
    return fingerprint([Path(workflow.basedir, "scripts", script)], HPL, own, others)


def code(script, segmenter=False):
    """Input function: the code fingerprint of `script` (hpl.fingerprint): its own text and every hpl
    module it imports, transitively, with the job's benchmark package (and, with segmenter=True, its
    segmenter's module) and no other benchmark's or segmenter's. A code change reruns exactly the jobs
    whose code it is."""

    def of(wildcards):
        own, others = [], []
        bench = getattr(wildcards, "bench", None)
        for name, spec in BENCHMARKS.items():
            (own if name == bench else others).extend(spec.code)
        if segmenter:
            mine = SEGMENTER_MODULES[config["segmenters"][wildcards.segmenter]["kind"]]
            own.append(mine)
            others += [p for p in SEGMENTER_MODULES.values() if p != mine]
        return _fingerprint(script, tuple(own), tuple(others))

    return of


def settings_of(kind):
    """Input function: the params of a settings dataclass (hpl.settings) for the job's benchmark."""
    return lambda wc: params(kind.from_config(config, wc.bench))


def generation_settings(wildcards):
    """What a generated reply depends on for the job's benchmark (hpl.settings.GenerationSettings)."""
    return params(GenerationSettings.from_config(config, wildcards.bench))


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
    """The trained checkpoint a method's evaluation loads ("<hpl method>.phaseK": after phase K).

    A zero-shot method loads no trained checkpoint: its `path` (any local Hugging Face folder or hub id),
    its `endpoint` ({"endpoint": settings}, played through an OpenAI-compatible API), or else the row's
    own base model untrained.
    """
    if ".phase" not in method and method_spec(method)["kind"] == "zeroshot":
        spec = method_spec(method)
        if "endpoint" in spec:
            return {"endpoint": spec["endpoint"]}
        if "path" in spec:
            return spec["path"]
        if model_spec(model)["kind"] == "tiny":
            return f"results/{bench}/{model}/base"
        return model_spec(model)["path"]
    if ".phase" in method:
        method, phase = method.split(".phase")
        return f"results/{bench}/{model}/train/{method}/seed{seed}/phase{phase}"
    if method_spec(method)["kind"] == "hpl":
        return f"results/{bench}/{model}/train/{method}/seed{seed}/phase3"
    return f"results/{bench}/{model}/train/{method}/seed{seed}"


def train_dir(wildcards):
    """The training job's output folder behind an evaluation's checkpoint (a zero-shot method has
    none: at most the tiny base model it evaluates untrained)."""
    method = wildcards.method.split(".phase")[0]
    if method_spec(method)["kind"] == "zeroshot":
        spec = method_spec(method)
        return base_model(wildcards) if not ({"endpoint", "path"} & set(spec)) else []
    return f"results/{wildcards.bench}/{wildcards.model}/train/{method}/seed{wildcards.seed}"


def eval_splits(bench):
    return BENCHMARKS[bench].eval_splits


def is_zeroshot(method):
    return method_spec(method.split(".phase")[0])["kind"] == "zeroshot"


def method_seeds(method):
    """Training seeds of a method; a zero-shot method is evaluated once (first seed): greedy decoding of
    an untrained model, or a cached endpoint, gives the same episodes for every seed."""
    return config["seeds"][:1] if is_zeroshot(method) else config["seeds"]


def eval_files(methods=None):
    return [
        f"results/{bench}/{model}/eval/{method}/seed{seed}/{split}.jsonl"
        for bench in config["benchmarks"]
        for model in config["models"]
        for method in (methods or config["methods"])
        for seed in method_seeds(method)
        for split in eval_splits(bench)
    ]


def is_endpoint_method(method):
    return is_zeroshot(method) and "endpoint" in method_spec(method.split(".phase")[0])


def benches_with_expert_source(source=None, scripted=False):
    """Benchmarks whose expert data come from `source` ("teacher", "import"), or, with scripted=True,
    from their engine's own expert (every other source; also benchmarks the config does not run).
    """
    other = ("teacher", "import")
    chosen = []
    for bench in BENCHMARKS:
        current = (config.get(bench) or {}).get("expert_source")
        if (scripted and current not in other) or (not scripted and current == source):
            chosen.append(bench)
    return chosen


def segmenter_kind(wildcards):
    return config["segmenters"][wildcards.segmenter]["kind"]


def segmenter_llm(wildcards):
    """The LLM the semantic segmenter asks (the endpoint and model, not its cache folder); none otherwise."""
    if segmenter_kind(wildcards) != "semantic":
        return {}
    return {key: config["llm"].get(key) for key in ("base_url", "model")}


def segmenter_inputs(wildcards):
    """pi_ref for the uncertainty segmenter (action entropies); nothing more for the others."""
    if config["segmenters"][wildcards.segmenter]["kind"] == "uncertainty":
        return {"ref": reference(wildcards)}
    return {}


def hpl_inputs(wildcards):
    """Pair files an HPL method trains on: its levels, the group level from its segmenter's curriculum."""
    spec, base = method_spec(wildcards.method), pi_ref_data(wildcards)
    files = {
        level: f"{base}/pairs/{level}.jsonl"
        for level in spec["levels"]
        if level != "group"
    }
    if "group" in spec["levels"]:
        files["group"] = f"{base}/curriculum/{spec['segmenter']}.jsonl"
    return files


def tables():
    outputs = ["results/table1.csv", "results/table6.csv", "results/table7.csv"]
    outputs += [
        "results/table2.csv",
        "results/figure4.png",
        "results/figure5.png",
        "results/table5.csv",
    ]
    return outputs


def sft_hparams(wildcards):
    return training_hparams(config, wildcards.bench, "sft")


def dpo_hparams(wildcards):
    return training_hparams(config, wildcards.bench, "dpo")


def method_spec(method):
    return config["method_specs"][method]


def methods_of_kind(kind):
    return [m for m in config["methods"] if method_spec(m)["kind"] == kind]


def one_of(names):
    """A wildcard regex matching exactly `names` (or nothing when empty)."""
    return "|".join(map(re.escape, names)) if names else "(?!x)x"


def reference(wildcards):
    """pi_ref: the SFT checkpoint of the job's reference seed (`ref` wildcard, or its training seed's)."""
    ref = getattr(wildcards, "ref", None) or reference_seed(config, wildcards.seed)
    return f"results/{wildcards.bench}/{wildcards.model}/train/sft/seed{ref}"


def pi_ref_data(wildcards):
    """The folder of everything pi_ref of the job's training seed generated: explore/, pairs/, segments/,
    groups/, curriculum/."""
    ref = reference_seed(config, wildcards.seed)
    return f"results/{wildcards.bench}/{wildcards.model}/ref{ref}"


def rft_samples(wildcards):
    return f"{pi_ref_data(wildcards)}/explore/rft_samples.jsonl"


def pair_files(wildcards):
    """The pair files a DPO method trains on, one per level of its spec."""
    levels = method_spec(wildcards.method)["levels"]
    return {level: f"{pi_ref_data(wildcards)}/pairs/{level}.jsonl" for level in levels}


def table5_specs():
    """Table 5 inputs per method (first benchmark, first model, first seed): see hpl.resources."""
    from hpl.resources import table5_inputs

    bench, model = config["benchmarks"][0], config["models"][0]
    # Table 5 compares what training data cost; a zero-shot row trains on nothing
    methods = [m for m in config["methods"] if not is_zeroshot(m)]
    uses_llm = any(method_spec(m).get("segmenter") == "semantic" for m in methods)
    llm_model = (
        (config["llm"]["model"] or "SmolLM2-135M-Instruct (local)")
        if uses_llm
        else None
    )
    teacher = config[bench]["expert_source"] == "teacher"
    specs = table5_inputs(
        bench,
        model,
        methods,
        seed=config["seeds"][0],
        reference_seed=reference_seed(config, config["seeds"][0]),
        llm_model=llm_model,
        shards_of=lambda path: planned_shards(path, SHARDS),
        teacher_model=model_label(config["teacher"]) if teacher else None,
    )
    return {
        m: {
            k: (
                [str(p) for p in v]
                if isinstance(v, list)
                else str(v) if isinstance(v, Path) else v
            )
            for k, v in s.items()
        }
        for m, s in specs.items()
    }


def table5_files():
    return sorted(
        {
            p
            for spec in table5_specs().values()
            for key in ("generation", "training", "llm_usage", "copied_training")
            for p in spec.get(key, [])
        }
    )


def phase_methods():
    """Figure 4's evaluations: the phases method after each curriculum phase."""
    return [f"{config['report']['phases']}.phase{k}" for k in (1, 2, 3)]


def shard_of(path):
    """`path` of a generation job (output, log, benchmark) as one of its shards writes it."""
    return re.sub(r"(\.\w+)$", r".shard{shard}of{shards}\1", path)


def shards_of(path):
    """Input function: the shard files the generation job's output `path` is gathered from; none when it
    plays its episodes itself (hpl.sharding.planned_shards: a finished output keeps its own).
    """
    return lambda wc: planned_shards(path.format(**dict(wc.items())), SHARDS)
