"""Rule expert: expert trajectories for the training tasks, written as they finish (resumable)."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")  # noqa: F821  the workflow's own hpl/

from pathlib import Path

from hpl.benchmarks import BENCHMARKS
from hpl.episodes import select_tasks
from hpl.io import ResumableJsonl, finished_together, read_json, write_json
from hpl.runlog import to_log
from hpl.settings import ExpertSettings

smk = snakemake  # noqa: F821 (snakemake is injected)
log = to_log(smk)
bench = BENCHMARKS[smk.wildcards.bench]
settings = ExpertSettings(**smk.params.settings).section(smk.config, bench.name)
data_dir = read_json(smk.input[0])["data_dir"]

with bench.session(Path(data_dir), settings) as shared:
    env = bench.env(data_dir, settings, **shared)
    tasks = select_tasks(env.task_ids(bench.train_split), settings["train_tasks"], seed=0)
    env.close()

out = ResumableJsonl(smk.output.data)
todo = [t for t in tasks if not out.done(t)]
log.info("%d training tasks, %d already collected", len(tasks), len(tasks) - len(todo))
card = bench.expert(data_dir, todo, settings, on_record=out.add, skip=out.done, workers=smk.threads)
with finished_together():  # the data stays resumable until the card, the last output, is written
    kept = out.finish(order=tasks)
    card.update({"benchmark": bench.name, "tasks_selected": len(tasks), "trajectories_kept": len(kept)})
    write_json(smk.output.card, card)
log.info("kept %d expert trajectories", len(kept))
