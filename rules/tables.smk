# The paper's tables, from the per-episode evaluation rows.


rule tables:
    input:
        eval_files(),
    output:
        table1="results/table1.csv",
        table1_long="results/table1_long.csv",
        table6="results/table6.csv",
        table7="results/table7.csv",
    log:
        "logs/tables.log",
    conda:
        "../envs/report.yaml"
    params:
        models=config["models"],
        methods=config["methods"],
        code=code_version("tables.py"),
    script:
        "../scripts/make_tables.py"


rule table2:
    input:
        eval_files(config["report"]["curriculum_ablation"]),
    output:
        table="results/table2.csv",
        long="results/table2_long.csv",
    log:
        "logs/table2.log",
    conda:
        "../envs/report.yaml"
    params:
        models=config["models"],
        base=config["report"]["curriculum_ablation"][0],
        code=code_version("tables.py"),
    script:
        "../scripts/make_report.py"


use rule table2 as figure4 with:
    input:
        eval_files(phase_methods()),
    output:
        png="results/figure4.png",
        csv="results/figure4.csv",
    log:
        "logs/figure4.log",
    params:
        models=config["models"],
        base=config["report"]["phases"],
        code=code_version("tables.py", "figures.py"),


use rule table2 as figure5 with:
    input:
        eval_files(config["report"]["loss_ablation"]),
    output:
        png="results/figure5.png",
        csv="results/figure5.csv",
    log:
        "logs/figure5.log",
    params:
        models=config["models"],
        base=config["report"]["loss_ablation"][0],
        code=code_version("tables.py", "figures.py"),


rule table5:
    input:
        lambda wc: table5_files(),
    output:
        "results/table5.csv",
    log:
        "logs/table5.log",
    conda:
        "../envs/report.yaml"
    params:
        specs=lambda wc: table5_specs(),
        code=code_version("resources.py"),
    script:
        "../scripts/make_table5.py"
