"""Rules sft / rft: behaviour cloning (loss on agent turns only) from the base model, on the expert
trajectories (SFT) or on them plus pi_ref's successful samples (RFT)."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")  # noqa: F821  the workflow's own hpl/

from hpl.io import read_jsonl
from hpl.launch import processes_for, train, visible_gpus
from hpl.runlog import to_log, use_threads

smk = snakemake  # noqa: F821 (snakemake is injected)
log = to_log(smk)
use_threads(smk.threads)
records = read_jsonl(smk.input.expert)
if "samples" in smk.input.keys():  # RFT: add pi_ref's own successful trajectories to the expert data
    successes = [r for r in read_jsonl(smk.input.samples) if r["success"]]
    log.info("RFT: %d expert + %d successful pi_ref trajectories", len(records), len(successes))
    records += successes
args = dict(model_path=smk.params.base, records=records, out_dir=smk.output[0], hp=smk.params.hp)
args["generation"] = smk.params.generation  # reply budget and window (hpl.context)
processes = processes_for(int(smk.resources.gpu), visible_gpus())  # one per GPU (accelerate launch)
metrics = train("hpl.sft:train_sft", {**args, "seed": int(smk.wildcards.seed)}, processes, log=log)
log.info("SFT done: %s", metrics)
