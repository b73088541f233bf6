# The embedded tiny model, built from scratch here (other models are a local path or hub id).


rule tiny_model:
    input:
        expert="results/{bench}/expert/train.jsonl",
    output:
        directory("results/{bench}/{model}/base"),
    log:
        "logs/{bench}/{model}/tiny_model.log",
    conda:
        "../envs/agent.yaml"
    params:
        spec=lambda wc: model_spec(wc.model),
        generation=context_settings(config["generation"]),  # max_positions null: sized to the data
        code=code("build_tiny_model.py"),
    script:
        "../scripts/build_tiny_model.py"
