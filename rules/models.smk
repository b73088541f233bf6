# Models: the embedded tiny model (built from scratch here) and behaviour cloning (SFT) -> pi_ref.


rule tiny_model:
    input:
        expert="results/{bench}/expert/train.jsonl",
    output:
        directory("results/{bench}/{model}/base"),
    params:
        spec=lambda wc: model_spec(wc.model),
        code=code_version("models.py"),
    conda:
        "../envs/agent.yaml"
    log:
        "logs/{bench}/{model}/tiny_model.log",
    script:
        "../scripts/build_tiny_model.py"


rule sft:
    input:
        base=base_model,
        expert="results/{bench}/expert/train.jsonl",
    output:
        directory("results/{bench}/{model}/train/sft/seed{seed}"),
    params:
        base=base_model_path,
        hp=config["training"]["sft"],
        code=code_version("sft.py", "chat.py", "models.py"),
    threads: workflow.cores
    resources:
        gpu=1,
        mem_mb=lambda wc, attempt: 16000 * attempt,
        runtime=lambda wc, attempt: 240 * attempt,
    conda:
        "../envs/agent.yaml"
    log:
        "logs/{bench}/{model}/sft/seed{seed}.log",
    benchmark:
        "results/benchmarks/{bench}/{model}/sft/seed{seed}.tsv"
    script:
        "../scripts/train_sft.py"
