"""Rules sft / rft: behaviour cloning (loss on agent turns only) from the base model, on the expert
trajectories (SFT) or on them plus pi_ref's successful samples (RFT; with none, SFT's model of the seed
is copied: the same data, settings and seed train the same weights)."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")  # noqa: F821  the workflow's own hpl/

from hpl.io import read_jsonl
from hpl.launch import processes_for, train, visible_gpus
from hpl.runlog import to_log, use_threads
from hpl.sft import copy_sft_model

smk = snakemake  # noqa: F821 (snakemake is injected)
log = to_log(smk)
use_threads(smk.threads)
records = read_jsonl(smk.input.expert)
successes = None
if "samples" in smk.input.keys():  # RFT: add pi_ref's own successful trajectories to the expert data
    successes = [r for r in read_jsonl(smk.input.samples) if r["success"]]
    log.info("RFT: %d expert + %d successful pi_ref trajectories", len(records), len(successes))
    records += successes
if successes == []:  # RFT with SFT's data, settings and seed: SFT's model, bit for bit
    metrics = copy_sft_model(smk.input.sft, smk.output[0])
    log.info("RFT: no successful sample, so RFT's model is SFT's; copied from %s", smk.input.sft)
else:
    args = dict(model_path=smk.params.base, records=records, out_dir=smk.output[0], hp=smk.params.hp)
    args["generation"] = smk.params.generation  # reply budget and window (hpl.context)
    processes = processes_for(int(smk.resources.gpu), visible_gpus())  # one per GPU (accelerate launch)
    metrics = train("hpl.sft:train_sft", {**args, "seed": int(smk.wildcards.seed)}, processes, log=log)
    log.info("SFT done: %s", metrics)
