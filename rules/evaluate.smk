# Evaluation: greedy decoding, one jsonl row per episode, resumable. Trained methods load their checkpoint;
# a zero-shot method (kind: zeroshot) a model path, its row's untrained base model, or an endpoint.
# With generation.shards > 1 the shards play (evaluate_shard) and evaluate gathers them (hpl.sharding).


rule evaluate:
    input:
        manifest="resources/{bench}/manifest.json",
        train=train_dir,
        rows_shards=shards_of(
            "results/{bench}/{model}/eval/{method}/seed{seed}/{split}.jsonl"
        ),
    output:
        rows="results/{bench}/{model}/eval/{method}/seed{seed}/{split}.jsonl",
    log:
        "logs/{bench}/{model}/eval/{method}/seed{seed}/{split}.log",
    benchmark:
        "results/benchmarks/{bench}/{model}/eval/{method}/seed{seed}/{split}.tsv"
    conda:
        "../envs/agent.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 120 * attempt,
    params:
        checkpoint=lambda wc: checkpoint(wc.bench, wc.model, wc.method, wc.seed),
        episodes=settings_of(EpisodeSettings),
        tasks=lambda wc: config[wc.bench]["eval_tasks"][wc.split],
        generation=generation_settings,
        code=code("evaluate.py"),
    script:
        "../scripts/evaluate.py"


use rule evaluate as evaluate_shard with:
    input:
        manifest="resources/{bench}/manifest.json",
        train=train_dir,
    output:
        rows=shard_of("results/{bench}/{model}/eval/{method}/seed{seed}/{split}.jsonl"),
    log:
        shard_of("logs/{bench}/{model}/eval/{method}/seed{seed}/{split}.log"),
    benchmark:
        shard_of(
            "results/benchmarks/{bench}/{model}/eval/{method}/seed{seed}/{split}.tsv"
        )
