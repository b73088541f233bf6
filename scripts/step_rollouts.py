"""Rule step_rollouts: pi_ref's continuations and Monte Carlo values at expert steps (IPR's data)."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")  # noqa: F821  the workflow's own hpl/

from hpl.benchmarks import BENCHMARKS, env_factory
from hpl.episodes import select_tasks
from hpl.io import finished_together, read_json, read_jsonl, write_jsonl
from hpl.policy import job_policy
from hpl.runlog import to_log, use_threads
from hpl.settings import EpisodeSettings, GenerationSettings, RolloutSettings, runtime
from hpl.sharding import gather_outputs, job_shard, shard
from hpl.step_level import collect_step_data

smk = snakemake  # noqa: F821 (snakemake is injected)
log = to_log(smk)
use_threads(smk.threads)
bench = BENCHMARKS[smk.wildcards.bench]
episodes, rollouts = EpisodeSettings(**smk.params.episodes), RolloutSettings(**smk.params.rollouts)
gen = GenerationSettings(**smk.params.generation).with_runtime(smk.config)
lanes = runtime(smk.config, "exploration")["lanes"]
data_dir = read_json(smk.input.manifest)["data_dir"]
make_env = env_factory(bench, data_dir, episodes.section(smk.config, bench.name))
experts = read_jsonl(smk.input.expert)
chosen = select_tasks([e["id"] for e in experts], rollouts.tasks, seed=0)  # the tasks explore.py plays
if gather_outputs(smk, log, order=chosen):  # rows back in the order of the explored trajectories
    sys.exit()  # the shards (step_rollouts_shard) played the rollouts
chosen = set(shard(chosen, *job_shard(smk.wildcards)))  # all of them unless this is a shard job
# three outputs, finished one after another: an interruption must not lose the finished continuations
with finished_together():
    with job_policy(smk.input.ref, gen, lanes, server_log=smk.log[0] + ".server") as policy:
        records = collect_step_data(
            make_env,
            policy,
            [e for e in experts if e["id"] in chosen],
            mc_rollouts=rollouts.mc_rollouts,
            temperature=rollouts.mc_temperature,
            step_positions=rollouts.step_positions,
            lanes=lanes,
            continuations_path=smk.output.continuations,
            values_path=smk.output.values,
        )
    make_env.close()  # before the last output: nothing slow between it and the job's end
    write_jsonl(smk.output.records, records)
log.info("%d step records", len(records))
