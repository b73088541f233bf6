"""Rule benchmark_data: put a benchmark's data in place and write its manifest."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")  # noqa: F821  the workflow's own hpl/

from hpl.benchmarks import prepare_benchmark
from hpl.io import write_json
from hpl.runlog import to_log
from hpl.settings import EpisodeSettings

smk = snakemake  # noqa: F821 (snakemake is injected)
log = to_log(smk)
bench = smk.wildcards.bench
manifest = prepare_benchmark(
    bench,
    f"resources/{bench}/data",
    smk.params.mirror,
    EpisodeSettings(**smk.params.settings).section(smk.config, bench),
)
log.info("prepared %s: %s", bench, manifest["splits"])
write_json(smk.output[0], manifest)
