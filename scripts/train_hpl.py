"""Rule hpl: hierarchical DPO (trajectory + step + group levels), the group level phase by phase."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")  # noqa: F821  the workflow's own hpl/

from hpl.dpo import LevelSettings, train_hierarchical
from hpl.io import read_jsonl
from hpl.runlog import to_log, use_threads

smk = snakemake  # noqa: F821 (snakemake is injected)
log = to_log(smk)
use_threads(smk.threads)
spec = smk.params.spec
pairs = {
    level: read_jsonl(smk.input[level]) if level in smk.input.keys() else []
    for level in ("traj", "step", "group")
}
settings = {level: LevelSettings(**values) for level, values in spec["levels"].items()}
summary = train_hierarchical(
    smk.input.ref,
    pairs["traj"],
    pairs["step"],
    pairs["group"],
    smk.output[0],
    smk.params.hp,
    settings,
    variant=spec["curriculum"],
    thresholds=smk.params.thresholds,
    seed=int(smk.wildcards.seed),
    log=log,
)
log.info("HPL done: %s", {phase: m.get("train_loss", "skipped") for phase, m in summary.items()})
