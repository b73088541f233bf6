"""Rules table2 / figure4 / figure5: the curriculum ablation, success per phase, the loss ablation."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")  # noqa: F821  the workflow's own hpl/

from hpl.figures import figure4, figure5
from hpl.io import atomic_write
from hpl.runlog import to_log
from hpl.tables import load_runs, loss_ablation_table, phase_table, table2

smk = snakemake  # noqa: F821 (snakemake is injected)
log = to_log(smk)
runs = load_runs(smk.input)
base = smk.params.base

if smk.rule == "table2":
    wide, long = table2(runs, [(model, base) for model in smk.params.models])
    for frame, path in [(wide, smk.output.table), (long, smk.output.long)]:
        with atomic_write(path) as handle:
            frame.to_csv(handle, index=False)
    log.info("table2:\n%s", wide.to_string(index=False))
elif smk.rule == "figure4":
    plotted = figure4(phase_table(runs, base), smk.output.png, smk.output.csv)
    log.info("figure4:\n%s", plotted.to_string(index=False))
else:
    _, long = loss_ablation_table(runs, base, smk.params.models)
    plotted = figure5(long, smk.output.png, smk.output.csv)
    log.info("figure5:\n%s", plotted.to_string(index=False))
