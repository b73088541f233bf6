"""Rule tables: Table 1 (main results), its comparison with SFT, and Tables 6/7 (ALFWorld per task type) from the eval rows."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")  # noqa: F821  the workflow's own hpl/

from hpl.io import atomic_write
from hpl.runlog import to_log
from hpl.tables import load_runs, table1, type_table, versus_baseline

smk = snakemake  # noqa: F821 (snakemake is injected)
log = to_log(smk)
runs = load_runs(smk.input)
order = [(model, method) for model in smk.params.models for method in smk.params.methods]


def save(frame, path):
    with atomic_write(path) as handle:
        frame.to_csv(handle, index=False)


wide, long = table1(runs, order)
save(wide, smk.output.table1)
save(long, smk.output.table1_long)
versus = versus_baseline(long, "sft")
save(versus, smk.output.table1_vs_sft)
save(type_table(runs, "seen", order), smk.output.table6)
save(type_table(runs, "unseen", order), smk.output.table7)
log.info("table1:\n%s", wide.to_string(index=False))
log.info("against SFT:\n%s", versus.to_string(index=False))
