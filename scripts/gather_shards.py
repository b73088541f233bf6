"""Rules gather_episodes / gather_step_rollouts: shard files -> the unsharded job's file (hpl.sharding)."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")  # noqa: F821  the workflow's own hpl/

from hpl.episodes import select_tasks
from hpl.io import read_jsonl
from hpl.runlog import to_log
from hpl.sharding import gather_jsonl

smk = snakemake  # noqa: F821 (snakemake is injected)
log = to_log(smk)
order = None
if "expert" in smk.input.keys():  # step files: rows in the order of the explored expert trajectories
    order = select_tasks([e["id"] for e in read_jsonl(smk.input.expert)], smk.params.tasks, seed=0)
for name in smk.output.keys():
    rows = gather_jsonl(smk.input[name], smk.output[name], order)
    log.info("%s: %d rows from %d shards", smk.output[name], rows, len(smk.input[name]))
