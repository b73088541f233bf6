"""Rule dpo: DPO from pi_ref on the method's levels (ETO: trajectory, IPR: step + NLL)."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")  # noqa: F821  the workflow's own hpl/

from hpl.io import read_json, read_jsonl
from hpl.launch import processes_for, train, visible_gpus
from hpl.pairs import EmptyPairsError, FilterReport
from hpl.runlog import to_log, use_threads

smk = snakemake  # noqa: F821 (snakemake is injected)
log = to_log(smk)
use_threads(smk.threads)
levels = smk.params.spec["levels"]
pairs = {level: read_jsonl(smk.input[level]) for level in levels}
for level, found in pairs.items():
    if not found:  # refuse to train on nothing, and say which threshold removed the candidates
        report_path = smk.input[level].replace(".jsonl", "_report.json")
        raise EmptyPairsError(FilterReport(**read_json(report_path)), source=smk.input[level])
args = dict(ref_path=smk.input.ref, pairs_by_level=pairs, out_dir=smk.output[0], hp=smk.params.hp)
processes = processes_for(int(smk.resources.gpu), visible_gpus())  # one per GPU (accelerate launch)
metrics = train(
    "hpl.dpo:train_dpo", {**args, "settings": levels, "seed": int(smk.wildcards.seed)}, processes, log=log
)
log.info("DPO done: %s", metrics)
