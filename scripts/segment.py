"""Rule segment: action groups of the expert trajectories used for group-level data, by one segmenter."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")  # noqa: F821  the workflow's own hpl/

from collections import Counter

from hpl.episodes import select_tasks
from hpl.io import read_jsonl, write_json, write_jsonl
from hpl.runlog import to_log, use_threads
from hpl.segmenters.runner import segment_experts

smk = snakemake  # noqa: F821 (snakemake is injected)
log = to_log(smk)
use_threads(smk.threads)
experts = read_jsonl(smk.input.expert)
explored, grouped = smk.params.tasks  # the explored subset, then the group-level subset of it
chosen = set(select_tasks(select_tasks([e["id"] for e in experts], explored, seed=0), grouped, seed=0))
subset = [e for e in experts if e["id"] in chosen]
rows, usage = segment_experts(
    smk.params.spec,
    experts,
    subset,
    ref_path=smk.input.get("ref"),
    llm={**smk.config["llm"], **smk.params.llm},  # the cache folder is read at run time
    max_length=smk.params.max_length,
    server_log=smk.log[0] + ".server",
)
write_jsonl(smk.output.segments, rows)
write_json(smk.output.usage, usage)
log.info(
    "%d trajectories segmented into %d groups; status %s; LLM usage %s",
    len(rows),
    sum(len(r["segments"]) for r in rows),
    dict(Counter(r["status"] for r in rows)),
    usage,
)
