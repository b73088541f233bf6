"""Rule groups: losing groups and Monte Carlo group rewards for one segmenter (the reward table)."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")  # noqa: F821  the workflow's own hpl/

from hpl.benchmarks import BENCHMARKS, env_factory
from hpl.group_level import group_values, reward_table, sample_negatives, value_states
from hpl.io import ResumableJsonl, finished_together, read_json, read_jsonl, write_jsonl
from hpl.policy import job_policy
from hpl.runlog import to_log, use_threads
from hpl.settings import EpisodeSettings, GenerationSettings, NegativeSettings, RolloutSettings, runtime

smk = snakemake  # noqa: F821 (snakemake is injected)
log = to_log(smk)
use_threads(smk.threads)
bench = BENCHMARKS[smk.wildcards.bench]
episodes, groups = EpisodeSettings(**smk.params.episodes), NegativeSettings(**smk.params.negatives)
rollouts = RolloutSettings(**smk.params.rollouts)
gen = GenerationSettings(**smk.params.generation).with_runtime(smk.config)
lanes = runtime(smk.config, "exploration")["lanes"]
data_dir = read_json(smk.input.manifest)["data_dir"]
experts = {e["id"]: e for e in read_jsonl(smk.input.expert)}
segments = {row["id"]: row["segments"] for row in read_jsonl(smk.input.segments)}


make_env = env_factory(bench, data_dir, episodes.section(smk.config, bench.name))
# three outputs, finished one after another: an interruption must not lose the finished negatives
with finished_together():
    # the policy (a served checkpoint: its server) ends before the last output
    with job_policy(smk.input.ref, gen, lanes, server_log=smk.log[0] + ".server") as policy:
        negatives_log = ResumableJsonl(smk.output.negatives)
        negatives = sample_negatives(
            make_env,
            policy,
            experts,
            segments,
            negatives=groups.negatives,
            tries=groups.tries,
            temperature=rollouts.mc_temperature,
            lanes=lanes,
            log=negatives_log,
        )
        order = [k for k in negatives]
        negatives_log.finish(order=order)
        values_log = ResumableJsonl(smk.output.values)
        states = value_states(experts, negatives)
        values = group_values(
            make_env,
            policy,
            states,
            mc_rollouts=rollouts.mc_rollouts,
            temperature=rollouts.mc_temperature,
            lanes=lanes,
            log=values_log,
        )
    make_env.close()  # before the last output: nothing slow between it and the job's end
    table = reward_table(experts, negatives, values)
    write_jsonl(smk.output.table, table)
log.info("%d expert groups, %d losing groups", len(table), sum(len(r["negatives"]) for r in table))
