"""Rules explore / rft_samples: pi_ref plays the training tasks (k samples each), one row per episode."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")  # noqa: F821  the workflow's own hpl/

from hpl.benchmarks import BENCHMARKS, env_factory
from hpl.episodes import play, select_tasks
from hpl.io import ResumableJsonl, read_json, read_jsonl
from hpl.policy import job_policy
from hpl.runlog import to_log, use_threads
from hpl.settings import EpisodeSettings, GenerationSettings
from hpl.sharding import gather_outputs, job_shard, shard
from hpl.tables import episode_metrics

smk = snakemake  # noqa: F821 (snakemake is injected)
log = to_log(smk)
if gather_outputs(smk, log):
    sys.exit()  # the shards (<rule>_shard) played the runs
use_threads(smk.threads)
bench = BENCHMARKS[smk.wildcards.bench]
episodes, k = EpisodeSettings(**smk.params.episodes), smk.params.samples
gen = GenerationSettings(**smk.params.generation).with_runtime(smk.config)
data_dir = read_json(smk.input.manifest)["data_dir"]
make_env = env_factory(bench, data_dir, episodes.section(smk.config, bench.name))

# the tasks with expert demonstrations (a fixed seeded subset of them when exploration.tasks is set)
tasks = select_tasks([record["id"] for record in read_jsonl(smk.input.expert)], smk.params.tasks, seed=0)
runs = [(task if k == 1 else f"{task}#{i}", task) for task in tasks for i in range(k)]
runs = shard(runs, *job_shard(smk.wildcards))  # all of them unless this is a shard job
out = ResumableJsonl(smk.output[0])
todo = [run for run in runs if not out.done(run[0])]
log.info("%d runs (%d tasks x %d), %d already done", len(runs), len(tasks), k, len(runs) - len(todo))
if todo:
    with job_policy(smk.input.ref, gen, server_log=smk.log[0] + ".server") as policy:
        play(
            make_env,
            policy,
            todo,
            parallel=gen["parallel_episodes"],
            temperature=smk.params.temperature,
            max_turns=episodes.max_turns,
            on_finish=lambda ep: out.add(ep.record()),
            progress="explore",
        )
make_env.close()  # before the output is complete: nothing slow between it and the job's end
episodes = out.finish(order=[run_id for run_id, _ in runs])
log.info("pi_ref on training tasks: %s", episode_metrics(episodes))
