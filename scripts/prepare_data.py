"""Rule benchmark_data: put a benchmark's data in place and write its manifest."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")  # noqa: F821  the workflow's own hpl/

from hpl.benchmarks import prepare_benchmark
from hpl.io import write_json
from hpl.runlog import to_log

log = to_log(snakemake)  # noqa: F821 (snakemake is injected)
bench = snakemake.wildcards.bench  # noqa: F821
manifest = prepare_benchmark(bench, f"resources/{bench}/data", snakemake.params.mirror)  # noqa: F821
log.info("prepared %s: %s", bench, manifest["splits"])
write_json(snakemake.output[0], manifest)  # noqa: F821
