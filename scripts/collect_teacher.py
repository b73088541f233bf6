"""Rule expert_teacher: a teacher LLM plays the training tasks; kept trajectories, data card, LLM usage."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")  # noqa: F821  the workflow's own hpl/

from hpl.benchmarks import BENCHMARKS, env_factory
from hpl.endpoint import endpoint_policy, model_label, public_url, resolve
from hpl.episodes import select_tasks
from hpl.io import ResumableJsonl, finished_together, read_json, write_json
from hpl.runlog import to_log
from hpl.settings import ExpertSettings
from hpl.teacher import collect_teacher

smk = snakemake  # noqa: F821 (snakemake is injected)
log = to_log(smk)
bench = BENCHMARKS[smk.wildcards.bench]
settings = ExpertSettings(**smk.params.settings).section(smk.config, bench.name)
# transport settings (concurrency, retries, cache, key variable) come from the config: they are not params
teacher = resolve({**smk.config["teacher"], **smk.params.teacher})
data_dir = read_json(smk.input.manifest)["data_dir"]

make_env = env_factory(bench, data_dir, settings)
probe = make_env()
tasks = select_tasks(probe.task_ids(bench.train_split), settings["train_tasks"], seed=0)
probe.close()

out = ResumableJsonl(smk.output.data)
todo = [t for t in tasks if not out.done(t)]
log.info("%d training tasks, %d already kept by an earlier run", len(tasks), len(tasks) - len(todo))
with endpoint_policy(teacher, server_log=smk.log[0] + ".server") as policy:
    _, card = collect_teacher(
        bench.name,
        make_env,
        todo,
        policy,
        model=model_label(teacher),
        max_turns=settings["max_turns"],
        temperature=teacher["temperature"],
        on_record=out.add,
        progress="teacher",
    )
    usage = policy.usage.as_dict()
make_env.close()  # before the outputs: nothing slow between them and the job's end
with finished_together():  # the data stays resumable until the card, the last output, is written
    kept = out.finish(order=tasks)
    card.update(
        endpoint=public_url(teacher["base_url"]) or "local SmolLM2 server (hpl.llm_server)",
        tasks_selected=len(tasks),
        kept_before=len(tasks) - len(todo),
        trajectories_kept=len(kept),
    )
    usage_record = {**usage, "model": card["teacher"]["model"], "purpose": "teacher expert data"}
    write_json(smk.output.usage, usage_record)
    write_json(smk.output.card, card)
log.info("kept %d teacher trajectories; LLM usage %s", len(kept), usage)
if not kept:  # a legitimate measurement (a weak teacher), but SFT needs at least one trajectory
    log.warning(
        "the teacher solved no task at the threshold %s: SFT on this data will fail", card["keep_threshold"]
    )
