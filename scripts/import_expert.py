"""Rule expert_import: existing expert data (an ETO/IPR conversation file), checked and mapped to task ids."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")  # noqa: F821  the workflow's own hpl/

from hpl.benchmarks import BENCHMARKS
from hpl.expert_import import config_key, import_experts, task_index
from hpl.io import read_json, write_json, write_jsonl
from hpl.runlog import to_log
from hpl.settings import ExpertSettings

smk = snakemake  # noqa: F821 (snakemake is injected)
log = to_log(smk)
bench = BENCHMARKS[smk.wildcards.bench]
settings = ExpertSettings(**smk.params.settings).section(smk.config, bench.name)
data_dir = read_json(smk.input.manifest)["data_dir"]

index = task_index(bench.name, data_dir, bench.train_split, settings)
records, card = import_experts(
    bench.name,
    smk.input.source,
    index,
    train_tasks=settings["train_tasks"],
    key=config_key(bench.name),
)
if not records:
    raise SystemExit(
        f"{config_key(bench.name)}: no row of {smk.input.source} could be imported; see {smk.log[0]}"
    )
write_jsonl(smk.output.data, records)
write_json(smk.output.card, card)
log.info("imported %d expert trajectories (%d rows not imported)", len(records), card["rejected"])
