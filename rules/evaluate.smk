# Evaluation: greedy decoding, one jsonl row per episode, resumable. Trained methods load their checkpoint;
# a zero-shot method (kind: zeroshot) a model path, its row's untrained base model, or an endpoint.


rule evaluate:
    input:
        manifest="resources/{bench}/manifest.json",
        train=train_dir,
    output:
        sharded("results/{bench}/{model}/eval/{method}/seed{seed}/{split}.jsonl"),
    log:
        sharded("logs/{bench}/{model}/eval/{method}/seed{seed}/{split}.log"),
    benchmark:
        sharded(
            "results/benchmarks/{bench}/{model}/eval/{method}/seed{seed}/{split}.tsv"
        )
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
