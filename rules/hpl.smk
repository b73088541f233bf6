# HPL's group level: segment expert trajectories, sample losing groups and their Monte Carlo rewards,
# bucket the pairs on the dual-layer curriculum, and train the hierarchical DPO phase by phase.
# Every file carries the segmenter's name: changing one segmenter reruns only its branch.


rule segment:
    input:
        unpack(segmenter_inputs),
        expert="results/{bench}/expert/train.jsonl",
    output:
        segments="results/{bench}/{model}/ref{ref}/segments/{segmenter}.jsonl",
        usage="results/{bench}/{model}/ref{ref}/segments/{segmenter}_usage.json",
    log:
        "logs/{bench}/{model}/ref{ref}/segments/{segmenter}.log",
    benchmark:
        "results/benchmarks/{bench}/{model}/ref{ref}/segments/{segmenter}.tsv"
    conda:
        "../envs/agent.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 6000 * attempt,
        runtime=lambda wc, attempt: 120 * attempt,
    params:
        spec=lambda wc: config["segmenters"][wc.segmenter],
        llm=segmenter_llm,
        tasks=lambda wc: (explored_tasks(config, wc.bench), config["groups"]["tasks"]),
        max_length=lambda wc: (
            config["training"]["dpo"]["max_length"]
            if segmenter_kind(wc) == "uncertainty"
            else None
        ),
        code=code("segment.py", segmenter=True),
    script:
        "../scripts/segment.py"


rule groups:
    input:
        manifest="resources/{bench}/manifest.json",
        expert="results/{bench}/expert/train.jsonl",
        segments="results/{bench}/{model}/ref{ref}/segments/{segmenter}.jsonl",
        ref=reference,
    output:
        table="results/{bench}/{model}/ref{ref}/groups/{segmenter}.jsonl",
        negatives="results/{bench}/{model}/ref{ref}/groups/{segmenter}_negatives.jsonl",
        values="results/{bench}/{model}/ref{ref}/groups/{segmenter}_values.jsonl",
    log:
        "logs/{bench}/{model}/ref{ref}/groups/{segmenter}.log",
    benchmark:
        "results/benchmarks/{bench}/{model}/ref{ref}/groups/{segmenter}.tsv"
    conda:
        "../envs/agent.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 480 * attempt,
    params:
        episodes=settings_of(EpisodeSettings),
        negatives=params(NegativeSettings.from_config(config)),
        rollouts=settings_of(RolloutSettings),
        generation=generation_settings,
        code=code("group_rollouts.py"),
    script:
        "../scripts/group_rollouts.py"


rule curriculum:
    input:
        expert="results/{bench}/expert/train.jsonl",
        table="results/{bench}/{model}/ref{ref}/groups/{segmenter}.jsonl",
    output:
        pairs="results/{bench}/{model}/ref{ref}/curriculum/{segmenter}.jsonl",
        grid="results/{bench}/{model}/ref{ref}/curriculum/{segmenter}_grid.json",
    log:
        "logs/{bench}/{model}/ref{ref}/curriculum/{segmenter}.log",
    conda:
        "../envs/agent.yaml"
    params:
        groups={key: config["groups"][key] for key in ("mc_gap", "min_expert_mc")},
        thresholds=lambda wc: config[wc.bench]["curriculum"],
        code=code("make_curriculum.py"),
    script:
        "../scripts/make_curriculum.py"


rule hpl:
    input:
        unpack(hpl_inputs),
        ref=reference,
    output:
        directory("results/{bench}/{model}/train/{method}/seed{seed}"),
    log:
        "logs/{bench}/{model}/{method}/seed{seed}.log",
    benchmark:
        "results/benchmarks/{bench}/{model}/{method}/seed{seed}.tsv"
    wildcard_constraints:
        method=one_of(
            [m for m in config["method_specs"] if method_spec(m)["kind"] == "hpl"]
        ),
    conda:
        "../envs/agent.yaml"
    threads: 8  # capped at --cores locally; a cluster job gets 8 CPUs
    resources:
        gpu=config["training"]["dpo"].get("gpus", 1),  # > 1: accelerate launch, one process per GPU
        mem_mb=lambda wc, attempt: 16000 * attempt,
        runtime=lambda wc, attempt: 480 * attempt,
    params:
        spec=lambda wc: method_spec(wc.method),
        hp=dpo_hparams,
        thresholds=lambda wc: config[wc.bench]["curriculum"],
        code=code("train_hpl.py"),
    script:
        "../scripts/train_hpl.py"
