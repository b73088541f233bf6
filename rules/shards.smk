# Gathering sharded generation jobs (generation.shards > 1): the shard files of an evaluation, of the
# exploration runs and of the step rollouts become the file the unsharded job writes (hpl.sharding).
if SHARDS > 1:

    rule gather_episodes:
        input:
            rows=lambda wc: expand(
                "results/{prefix}.shard{shard}.jsonl",
                prefix=wc.prefix,
                shard=range(SHARDS),
            ),
        output:
            rows="results/{prefix}.jsonl",
        log:
            "logs/gather/{prefix}.log",
        wildcard_constraints:
            prefix=r"[^/]+/[^/]+/(eval/[^/]+/seed\d+/[a-z_]+|explore/(trajectories|rft_samples))",
        script:
            "../scripts/gather_shards.py"

    rule gather_step_rollouts:
        input:
            **{
                name: expand(
                    f"results/{{{{bench}}}}/{{{{model}}}}/explore/step_{name}.shard{{shard}}.jsonl",
                    shard=range(SHARDS),
                )
                for name in ("continuations", "values", "records")
            },
            expert="results/{bench}/expert/train.jsonl",
        output:
            continuations="results/{bench}/{model}/explore/step_continuations.jsonl",
            values="results/{bench}/{model}/explore/step_values.jsonl",
            records="results/{bench}/{model}/explore/step_records.jsonl",
        log:
            "logs/{bench}/{model}/explore/gather_step_rollouts.log",
        params:
            tasks=config["exploration"]["tasks"],
        script:
            "../scripts/gather_shards.py"
