# The paper's tables, from the per-episode evaluation rows.


rule tables:
    input:
        eval_files(),
    output:
        table1="results/table1.csv",
        table1_long="results/table1_long.csv",
        table6="results/table6.csv",
        table7="results/table7.csv",
    params:
        models=config["models"],
        methods=config["methods"],
        code=code_version("tables.py"),
    conda:
        "../envs/report.yaml"
    log:
        "logs/tables.log",
    script:
        "../scripts/make_tables.py"
