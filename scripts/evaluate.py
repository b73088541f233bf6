"""Rule evaluate: greedy episodes of one checkpoint (or a zero-shot model / endpoint) on one split,
one row per episode (resumable). Sharded (generation.shards > 1): evaluate_shard jobs play, this one gathers."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")  # noqa: F821  the workflow's own hpl/

from hpl.benchmarks import BENCHMARKS, env_factory
from hpl.endpoint import eval_policy
from hpl.episodes import play, select_tasks
from hpl.io import ResumableJsonl, read_json
from hpl.policy import wants_admissible
from hpl.runlog import to_log, use_threads
from hpl.settings import EpisodeSettings, GenerationSettings
from hpl.sharding import gather_outputs, job_shard, shard
from hpl.tables import episode_metrics

smk = snakemake  # noqa: F821 (snakemake is injected)
log = to_log(smk)
if gather_outputs(smk, log):
    sys.exit()  # the shards played the episodes
use_threads(smk.threads)
bench = BENCHMARKS[smk.wildcards.bench]
split, episodes = smk.wildcards.split, EpisodeSettings(**smk.params.episodes)
gen = GenerationSettings(**smk.params.generation).with_runtime(smk.config)
data_dir = read_json(smk.input.manifest)["data_dir"]

make_env = env_factory(bench, data_dir, episodes.section(smk.config, bench.name))
probe = make_env()
variant = probe.admissible_variant  # named with the mode in table1 (Actions)
tasks = select_tasks(probe.task_ids(split), smk.params.tasks, seed=0)
tasks = shard(tasks, *job_shard(smk.wildcards))  # all of them unless this is a shard job
probe.close()

out = ResumableJsonl(smk.output[0])
todo = [t for t in tasks if not out.done(t)]
log.info("%s/%s: %d episodes, %d already done", bench.name, split, len(tasks), len(tasks) - len(todo))
if todo:
    with eval_policy(smk.params.checkpoint, gen, server_log=smk.log[0] + ".server") as policy:
        mode = "admissible" if wants_admissible(policy) else "free"  # named in table1 (Actions)
        if mode == "admissible" and variant:
            mode += f" ({variant})"
        play(
            make_env,
            policy,
            todo,
            parallel=gen["parallel_episodes"],
            temperature=0.0,
            max_turns=episodes.max_turns,
            on_finish=lambda ep: out.add({**ep.record(), "action_mode": mode}),
            progress=split,
        )
make_env.close()  # before the output is complete: nothing slow between it and the job's end
episodes = out.finish(order=tasks)
log.info("%s/%s: %s", bench.name, split, episode_metrics(episodes))
