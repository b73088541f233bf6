# Preference pairs: trajectory level (ETO) and step level (IPR), with a report of what each threshold cut.


rule traj_pairs:
    input:
        expert="results/{bench}/expert/train.jsonl",
        explored="results/{bench}/{model}/ref{ref}/explore/trajectories.jsonl",
    output:
        pairs="results/{bench}/{model}/ref{ref}/pairs/traj.jsonl",
        report="results/{bench}/{model}/ref{ref}/pairs/traj_report.json",
    log:
        "logs/{bench}/{model}/ref{ref}/pairs/traj.log",
    conda:
        "../envs/agent.yaml"
    params:
        thresholds={"min_gap": config["pairs"]["traj_min_gap"]},
        code=code("make_pairs.py"),
    script:
        "../scripts/make_pairs.py"


use rule traj_pairs as step_pairs with:
    input:
        expert="results/{bench}/expert/train.jsonl",
        explored="results/{bench}/{model}/ref{ref}/explore/step_records.jsonl",
    output:
        pairs="results/{bench}/{model}/ref{ref}/pairs/step.jsonl",
        report="results/{bench}/{model}/ref{ref}/pairs/step_report.json",
    log:
        "logs/{bench}/{model}/ref{ref}/pairs/step.log",
    params:
        thresholds={
            "final_gap": config["pairs"]["step_final_gap"],
            "mc_gap": config["pairs"]["step_mc_gap"],
        },
        code=code("make_pairs.py"),
