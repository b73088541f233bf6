# Expert trajectories D_e in the ETO conversation schema, with a data card beside them. Where they come
# from is each benchmark's `expert_source`: a scripted expert of the engine (rule expert), a teacher LLM
# through an OpenAI-compatible endpoint (rule expert_teacher), or an existing ETO/IPR file (rule
# expert_import). The wildcard constraints give every benchmark exactly one of the three rules.


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
    wildcard_constraints:
        bench=one_of(benches_with_expert_source(scripted=True)),
    conda:
        "../envs/engines.yaml"
    # ALFWorld's scripted expert plays its games in this many processes (~1 s a game each)
    threads: workflow.cores
    resources:
        mem_mb=lambda wc, attempt, threads: 2000 * (threads + 1) * attempt,
        runtime=lambda wc, attempt: 120 * attempt,
    params:
        settings=settings_of(ExpertSettings),
        code=code("collect_expert.py"),
    script:
        "../scripts/collect_expert.py"


rule expert_teacher:
    input:
        manifest="resources/{bench}/manifest.json",
    output:
        data="results/{bench}/expert/train.jsonl",
        card="results/{bench}/expert/card.json",
        usage="results/{bench}/expert/usage.json",
    log:
        "logs/{bench}/expert.log",
    benchmark:
        "results/benchmarks/{bench}/expert.tsv"
    wildcard_constraints:
        bench=one_of(benches_with_expert_source("teacher")),
    conda:
        "../envs/agent.yaml"
    resources:
        mem_mb=lambda wc, attempt: 6000 * attempt,
        runtime=lambda wc, attempt: 240 * attempt,
    params:
        settings=settings_of(ExpertSettings),
        teacher=result_settings(config["teacher"]),  # the rest is read from the config
        code=code("collect_teacher.py"),
    script:
        "../scripts/collect_teacher.py"


rule expert_import:
    input:
        manifest="resources/{bench}/manifest.json",
        source=lambda wc: config[wc.bench]["expert_file"],
    output:
        data="results/{bench}/expert/train.jsonl",
        card="results/{bench}/expert/card.json",
    log:
        "logs/{bench}/expert.log",
    wildcard_constraints:
        bench=one_of(benches_with_expert_source("import")),
    conda:
        "../envs/engines.yaml"
    params:
        settings=settings_of(ExpertSettings),
        code=code("import_expert.py"),
    script:
        "../scripts/import_expert.py"
