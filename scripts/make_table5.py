"""Rule table5: external LLM, LLM calls, generation and training time per method (benchmark files)."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")  # noqa: F821  the workflow's own hpl/

from hpl.io import atomic_write
from hpl.resources import table5
from hpl.runlog import to_log

smk = snakemake  # noqa: F821 (snakemake is injected)
log = to_log(smk)
frame = table5(smk.params.specs)
with atomic_write(smk.output[0]) as handle:
    frame.to_csv(handle, index=False)
log.info("table5:\n%s", frame.to_string(index=False))
