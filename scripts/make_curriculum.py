"""Rule curriculum: group pairs from the reward table, bucketed on the 3x3 length x difficulty grid."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")  # noqa: F821  the workflow's own hpl/

from hpl.curriculum import annotate, bucket_counts, format_grid
from hpl.group_level import group_pairs
from hpl.io import read_jsonl, write_json, write_jsonl
from hpl.runlog import to_log

smk = snakemake  # noqa: F821 (snakemake is injected)
log = to_log(smk)
g, t = smk.params.groups, smk.params.thresholds
experts = {e["id"]: e for e in read_jsonl(smk.input.expert)}
pairs, report = group_pairs(
    experts, read_jsonl(smk.input.table), mc_gap=g["mc_gap"], min_expert_mc=g["min_expert_mc"]
)
pairs = annotate(pairs, t["length"], t["difficulty"])
grid = bucket_counts(pairs, t["length"], t["difficulty"])
log.info(
    "%s\nbuckets (pairs per length x difficulty level, phase each enters):\n%s",
    report.summary(),
    format_grid(grid),
)
write_jsonl(smk.output.pairs, pairs)
write_json(smk.output.grid, {"buckets": grid, "thresholds": t, "filter": report.as_dict()})
