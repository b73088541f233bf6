# One-shot exploration with pi_ref (frozen): full trajectories (ETO), samples for RFT, step-level rollouts
# (IPR). Nothing is collected after this.


rule explore:
    input:
        manifest="resources/{bench}/manifest.json",
        expert="results/{bench}/expert/train.jsonl",
        ref=reference,
    output:
        sharded("results/{bench}/{model}/explore/trajectories.jsonl"),
    log:
        sharded("logs/{bench}/{model}/explore/trajectories.log"),
    benchmark:
        sharded("results/benchmarks/{bench}/{model}/explore/trajectories.tsv")
    conda:
        "../envs/agent.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 240 * attempt,
    params:
        episodes=settings_of(EpisodeSettings),
        tasks=config["exploration"]["tasks"],
        samples=1,
        temperature=config["exploration"]["temperature"],
        generation=generation_settings,
        code=code("explore.py"),
    script:
        "../scripts/explore.py"


use rule explore as rft_samples with:
    output:
        sharded("results/{bench}/{model}/explore/rft_samples.jsonl"),
    log:
        sharded("logs/{bench}/{model}/explore/rft_samples.log"),
    benchmark:
        sharded("results/benchmarks/{bench}/{model}/explore/rft_samples.tsv")
    params:
        episodes=settings_of(EpisodeSettings),
        tasks=config["exploration"]["tasks"],
        samples=config["exploration"]["rft_samples"],
        temperature=config["exploration"]["rft_temperature"],
        generation=generation_settings,
        code=code("explore.py"),


rule step_rollouts:
    input:
        manifest="resources/{bench}/manifest.json",
        expert="results/{bench}/expert/train.jsonl",
        ref=reference,
    output:
        continuations=sharded(
            "results/{bench}/{model}/explore/step_continuations.jsonl"
        ),
        values=sharded("results/{bench}/{model}/explore/step_values.jsonl"),
        records=sharded("results/{bench}/{model}/explore/step_records.jsonl"),
    log:
        sharded("logs/{bench}/{model}/explore/step_rollouts.log"),
    benchmark:
        sharded("results/benchmarks/{bench}/{model}/explore/step_rollouts.tsv")
    conda:
        "../envs/agent.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 480 * attempt,
    params:
        episodes=settings_of(EpisodeSettings),
        rollouts=params(RolloutSettings.from_config(config)),
        generation=generation_settings,
        code=code("step_rollouts.py"),
    script:
        "../scripts/step_rollouts.py"
