"""Rule dpo: DPO from pi_ref on the method's levels (ETO: trajectory, IPR: step + NLL).

A level with no pair that passed the thresholds adds nothing to the loss (a warning names the threshold
that removed its candidates); with no pair on any level the model is pi_ref, copied, as DPO with zero
steps would leave it, and its train_metrics.json says so (`skipped`, `no_pairs`)."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")  # noqa: F821  the workflow's own hpl/

from hpl.io import read_json, read_jsonl
from hpl.launch import processes_for, train, visible_gpus
from hpl.pairs import EmptyPairsError, FilterReport
from hpl.runlog import to_log, use_threads
from hpl.trainer import copy_model

smk = snakemake  # noqa: F821 (snakemake is injected)
log = to_log(smk)
use_threads(smk.threads)
levels = smk.params.spec["levels"]
pairs = {level: read_jsonl(smk.input[level]) for level in levels}
empty = {
    level: str(EmptyPairsError(FilterReport(**read_json(smk.input[level].replace(".jsonl", "_report.json")))))
    for level, found in pairs.items()
    if not found
}
for level, why in empty.items():
    log.warning("%s (%s): this level adds nothing to the loss", why, smk.input[level])
if len(empty) == len(pairs):
    metrics = copy_model(
        smk.input.ref, smk.output[0], {"skipped": True, "copied_from": smk.input.ref, "no_pairs": empty}
    )
    log.warning("no pair on any level: the model is pi_ref, copied from %s", smk.input.ref)
    sys.exit()
args = dict(ref_path=smk.input.ref, pairs_by_level=pairs, out_dir=smk.output[0], hp=smk.params.hp)
processes = processes_for(int(smk.resources.gpu), visible_gpus())  # one per GPU (accelerate launch)
metrics = train(
    "hpl.dpo:train_dpo", {**args, "settings": levels, "seed": int(smk.wildcards.seed)}, processes, log=log
)
log.info("DPO done: %s", metrics)
