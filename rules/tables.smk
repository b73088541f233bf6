# The paper's tables, from the per-episode evaluation rows.


rule tables:
    input:
        eval_files(),
    output:
        table1=report(
            "results/table1.csv", caption="../report/table1.rst", category="Tables"
        ),
        table1_long=report(
            "results/table1_long.csv",
            caption="../report/table1_long.csv.rst",
            category="Tables",
        ),
        table1_vs_sft=report(
            "results/table1_vs_sft.csv",
            caption="../report/table1_vs_sft.csv.rst",
            category="Tables",
        ),
        table6=report(
            "results/table6.csv", caption="../report/table6.rst", category="Tables"
        ),
        table7=report(
            "results/table7.csv", caption="../report/table7.rst", category="Tables"
        ),
    log:
        "logs/tables.log",
    conda:
        "../envs/report.yaml"
    params:
        models=config["models"],
        methods=config["methods"],
        code=code("make_tables.py"),
    script:
        "../scripts/make_tables.py"


rule table2:
    input:
        eval_files(config["report"]["curriculum_ablation"]),
    output:
        table=report(
            "results/table2.csv", caption="../report/table2.rst", category="Ablations"
        ),
        long="results/table2_long.csv",
    log:
        "logs/table2.log",
    conda:
        "../envs/report.yaml"
    params:
        models=config["models"],
        base=config["report"]["curriculum_ablation"][0],
        code=code("make_report.py"),
    script:
        "../scripts/make_report.py"


use rule table2 as figure4 with:
    input:
        eval_files(phase_methods()),
    output:
        png=report(
            "results/figure4.png", caption="../report/figure4.rst", category="Figures"
        ),
        csv=report(
            "results/figure4.csv", caption="../report/figure4.rst", category="Figures"
        ),
    log:
        "logs/figure4.log",
    params:
        models=config["models"],
        base=config["report"]["phases"],
        code=code("make_report.py"),


use rule table2 as figure5 with:
    input:
        eval_files(config["report"]["loss_ablation"]),
    output:
        png=report(
            "results/figure5.png", caption="../report/figure5.rst", category="Figures"
        ),
        csv=report(
            "results/figure5.csv", caption="../report/figure5.rst", category="Figures"
        ),
    log:
        "logs/figure5.log",
    params:
        models=config["models"],
        base=config["report"]["loss_ablation"][0],
        code=code("make_report.py"),


rule table5:
    input:
        lambda wc: table5_files(),
    output:
        report("results/table5.csv", caption="../report/table5.rst", category="Tables"),
    log:
        "logs/table5.log",
    conda:
        "../envs/report.yaml"
    params:
        specs=lambda wc: table5_specs(),
        code=code("make_table5.py"),
    script:
        "../scripts/make_table5.py"
