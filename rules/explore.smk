# One-shot exploration with pi_ref (frozen): full trajectories (ETO), samples for RFT, step-level rollouts
# (IPR). Nothing is collected after this. With generation.shards > 1 each job's shards play (<rule>_shard)
# and the job gathers them (hpl.sharding).


rule explore:
    input:
        manifest="resources/{bench}/manifest.json",
        expert="results/{bench}/expert/train.jsonl",
        ref=reference,
        rows_shards=shards_of(
            "results/{bench}/{model}/ref{ref}/explore/trajectories.jsonl"
        ),
    output:
        rows="results/{bench}/{model}/ref{ref}/explore/trajectories.jsonl",
    log:
        "logs/{bench}/{model}/ref{ref}/explore/trajectories.log",
    benchmark:
        "results/benchmarks/{bench}/{model}/ref{ref}/explore/trajectories.tsv"
    conda:
        "../envs/agent.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 240 * attempt,
    params:
        episodes=settings_of(EpisodeSettings),
        tasks=lambda wc: explored_tasks(config, wc.bench),
        samples=1,
        temperature=config["exploration"]["temperature"],
        generation=generation_settings,
        code=code("explore.py"),
    script:
        "../scripts/explore.py"


use rule explore as rft_samples with:
    input:
        manifest="resources/{bench}/manifest.json",
        expert="results/{bench}/expert/train.jsonl",
        ref=reference,
        rows_shards=shards_of(
            "results/{bench}/{model}/ref{ref}/explore/rft_samples.jsonl"
        ),
    output:
        rows="results/{bench}/{model}/ref{ref}/explore/rft_samples.jsonl",
    log:
        "logs/{bench}/{model}/ref{ref}/explore/rft_samples.log",
    benchmark:
        "results/benchmarks/{bench}/{model}/ref{ref}/explore/rft_samples.tsv"
    params:
        episodes=settings_of(EpisodeSettings),
        tasks=lambda wc: explored_tasks(config, wc.bench),
        samples=config["exploration"]["rft_samples"],
        temperature=config["exploration"]["rft_temperature"],
        generation=generation_settings,
        code=code("explore.py"),


rule step_rollouts:
    input:
        **{
            f"{name}_shards": shards_of(
                f"results/{{bench}}/{{model}}/ref{{ref}}/explore/step_{name}.jsonl"
            )
            for name in STEP_FILES
        },
        manifest="resources/{bench}/manifest.json",
        expert="results/{bench}/expert/train.jsonl",
        ref=reference,
    output:
        **{
            name: f"results/{{bench}}/{{model}}/ref{{ref}}/explore/step_{name}.jsonl"
            for name in STEP_FILES
        },
    log:
        "logs/{bench}/{model}/ref{ref}/explore/step_rollouts.log",
    benchmark:
        "results/benchmarks/{bench}/{model}/ref{ref}/explore/step_rollouts.tsv"
    conda:
        "../envs/agent.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 480 * attempt,
    params:
        episodes=settings_of(EpisodeSettings),
        rollouts=settings_of(RolloutSettings),
        generation=generation_settings,
        code=code("step_rollouts.py"),
    script:
        "../scripts/step_rollouts.py"


# the shards of the three generation rules: the same job on its share of the work (hpl.sharding)
use rule explore as explore_shard with:
    input:
        manifest="resources/{bench}/manifest.json",
        expert="results/{bench}/expert/train.jsonl",
        ref=reference,
    output:
        rows=shard_of("results/{bench}/{model}/ref{ref}/explore/trajectories.jsonl"),
    log:
        shard_of("logs/{bench}/{model}/ref{ref}/explore/trajectories.log"),
    benchmark:
        shard_of("results/benchmarks/{bench}/{model}/ref{ref}/explore/trajectories.tsv")


use rule rft_samples as rft_samples_shard with:
    input:
        manifest="resources/{bench}/manifest.json",
        expert="results/{bench}/expert/train.jsonl",
        ref=reference,
    output:
        rows=shard_of("results/{bench}/{model}/ref{ref}/explore/rft_samples.jsonl"),
    log:
        shard_of("logs/{bench}/{model}/ref{ref}/explore/rft_samples.log"),
    benchmark:
        shard_of("results/benchmarks/{bench}/{model}/ref{ref}/explore/rft_samples.tsv")


use rule step_rollouts as step_rollouts_shard with:
    input:
        manifest="resources/{bench}/manifest.json",
        expert="results/{bench}/expert/train.jsonl",
        ref=reference,
    output:
        **{
            name: shard_of(
                f"results/{{bench}}/{{model}}/ref{{ref}}/explore/step_{name}.jsonl"
            )
            for name in STEP_FILES
        },
    log:
        shard_of("logs/{bench}/{model}/ref{ref}/explore/step_rollouts.log"),
    benchmark:
        shard_of(
            "results/benchmarks/{bench}/{model}/ref{ref}/explore/step_rollouts.tsv"
        )
