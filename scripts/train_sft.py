"""Rule sft: behaviour cloning on the expert trajectories (loss on agent turns only)."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")  # noqa: F821  the workflow's own hpl/

from hpl.io import read_jsonl
from hpl.runlog import to_log, use_threads
from hpl.sft import train_sft

smk = snakemake  # noqa: F821 (snakemake is injected)
log = to_log(smk)
use_threads(smk.threads)
records = read_jsonl(smk.input.expert)
metrics = train_sft(smk.params.base, records, smk.output[0], smk.params.hp, seed=int(smk.wildcards.seed))
log.info("SFT done: %s", metrics)
