# Expert trajectories D_e in the ETO conversation schema, with a data card beside them.


rule expert:
    input:
        "resources/{bench}/manifest.json",
    output:
        data="results/{bench}/expert/train.jsonl",
        card="results/{bench}/expert/card.json",
    log:
        "logs/{bench}/expert.log",
    benchmark:
        "results/benchmarks/{bench}/expert.tsv"
    conda:
        "../envs/engines.yaml"
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 120 * attempt,
    params:
        settings=lambda wc: config[wc.bench],
        code=bench_code("trajectory.py", "react.py"),
    script:
        "../scripts/collect_expert.py"
