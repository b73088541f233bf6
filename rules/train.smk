# Training: behaviour cloning (SFT -> pi_ref), RFT, and DPO methods (ETO, IPR, HPL) from pi_ref.


rule sft:
    input:
        base=base_model,
        expert="results/{bench}/expert/train.jsonl",
    output:
        directory("results/{bench}/{model}/train/sft/seed{seed}"),
    log:
        "logs/{bench}/{model}/sft/seed{seed}.log",
    benchmark:
        "results/benchmarks/{bench}/{model}/sft/seed{seed}.tsv"
    conda:
        "../envs/agent.yaml"
    threads: 8  # capped at --cores locally; a cluster job gets 8 CPUs
    resources:
        gpu=config["training"]["sft"].get("gpus", 1),  # > 1: accelerate launch, one process per GPU
        mem_mb=lambda wc, attempt: 16000 * attempt,
        runtime=lambda wc, attempt: 240 * attempt,
    params:
        base=base_model_path,
        hp=sft_hparams,
        generation=context_settings(config["generation"]),  # reply budget, window: recorded with the model
        code=code("train_sft.py"),
    script:
        "../scripts/train_sft.py"


use rule sft as rft with:
    input:
        base=base_model,
        expert="results/{bench}/expert/train.jsonl",
        samples=rft_samples,
        # with no successful sample RFT's data is SFT's: the job copies this model (hpl.sft.copy_sft_model)
        sft="results/{bench}/{model}/train/sft/seed{seed}",
    output:
        directory("results/{bench}/{model}/train/rft/seed{seed}"),
    log:
        "logs/{bench}/{model}/rft/seed{seed}.log",
    benchmark:
        "results/benchmarks/{bench}/{model}/rft/seed{seed}.tsv"


rule dpo:
    input:
        unpack(pair_files),
        ref=reference,
    output:
        directory("results/{bench}/{model}/train/{method}/seed{seed}"),
    log:
        "logs/{bench}/{model}/{method}/seed{seed}.log",
    benchmark:
        "results/benchmarks/{bench}/{model}/{method}/seed{seed}.tsv"
    wildcard_constraints:
        method=one_of(methods_of_kind("dpo")),
    conda:
        "../envs/agent.yaml"
    threads: 8  # capped at --cores locally; a cluster job gets 8 CPUs
    resources:
        gpu=config["training"]["dpo"].get("gpus", 1),  # > 1: accelerate launch, one process per GPU
        mem_mb=lambda wc, attempt: 16000 * attempt,
        runtime=lambda wc, attempt: 240 * attempt,
    params:
        spec=lambda wc: method_spec(wc.method),
        hp=dpo_hparams,
        code=code("train_dpo.py"),
    script:
        "../scripts/train_dpo.py"
