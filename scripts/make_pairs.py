"""Rules traj_pairs / step_pairs: preference pairs with a report of what each threshold rejected."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")  # noqa: F821  the workflow's own hpl/

from hpl.io import read_jsonl, write_json, write_jsonl
from hpl.pairs import step_pairs, trajectory_pairs
from hpl.runlog import to_log

smk = snakemake  # noqa: F821 (snakemake is injected)
log = to_log(smk)
t = smk.params.thresholds
expert = {record["id"]: record for record in read_jsonl(smk.input.expert)}
explored = read_jsonl(smk.input.explored)
if smk.rule == "traj_pairs":
    pairs, report = trajectory_pairs(expert, explored, min_gap=t["min_gap"])
else:
    pairs, report = step_pairs(expert, explored, final_gap=t["final_gap"], mc_gap=t["mc_gap"])
log.info(report.summary())
write_jsonl(smk.output.pairs, pairs)
write_json(smk.output.report, report.as_dict())
