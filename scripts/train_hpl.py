"""Rule hpl: hierarchical DPO (trajectory + step + group levels), the group level phase by phase."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")  # noqa: F821  the workflow's own hpl/

from hpl.io import read_jsonl
from hpl.launch import processes_for, train, visible_gpus
from hpl.runlog import to_log, use_threads

smk = snakemake  # noqa: F821 (snakemake is injected)
log = to_log(smk)
use_threads(smk.threads)
spec = smk.params.spec
pairs = {
    level: read_jsonl(smk.input[level]) if level in smk.input.keys() else []
    for level in ("traj", "step", "group")
}
args = dict(ref_path=smk.input.ref, traj=pairs["traj"], step=pairs["step"], group=pairs["group"])
args |= dict(out_dir=smk.output[0], hp=smk.params.hp, settings=spec["levels"], variant=spec["curriculum"])
args |= dict(thresholds=smk.params.thresholds, seed=int(smk.wildcards.seed))
processes = processes_for(int(smk.resources.gpu), visible_gpus())  # one per GPU (accelerate launch)
summary = train("hpl.dpo:train_hierarchical", args, processes, log=log)
log.info("HPL done: %s", {phase: m.get("train_loss", "skipped") for phase, m in summary.items()})
