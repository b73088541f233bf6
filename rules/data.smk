# Benchmark data: from the local mirror (config data_mirror / $HPL_DATA_MIRROR) or the official source.


rule benchmark_data:
    output:
        "resources/{bench}/manifest.json",
    log:
        "logs/data/{bench}.log",
    conda:
        "../envs/engines.yaml"
    params:
        mirror=config["data_mirror"],
        settings=settings_of(EpisodeSettings),
        code=code("prepare_data.py"),
    script:
        "../scripts/prepare_data.py"
