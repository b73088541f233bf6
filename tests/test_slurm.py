"""The SLURM profile on a real single-node SLURM cluster (tests/slurm_cluster.py starts it, as root).

The CI-scale slice data -> expert -> tiny model -> SFT -> evaluation (-> tables) goes through `--profile`
with a copy of profiles/slurm/config.yaml in which only the lines a user edits are set to the test
cluster's: partitions, account, and the GPU type (for sft; evaluate keeps the shipped "any GPU"), plus
test-only speed settings (first status check after 1 s, one thread per job on this 2-core machine).
Every snakemake call runs under `timeout -s KILL`, and the cluster is stopped and removed whatever
happens, so the file cannot hang CI (about 2 minutes here; docs/cluster.md).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from hpl.io import read_jsonl
from hpl.mirror import PROJECT_ROOT

pytestmark = pytest.mark.slow

sys.path.insert(0, str(Path(__file__).parent))
from slurm_cluster import ClusterError, SlurmCluster, slurm_cluster  # noqa: E402

PROFILE = PROJECT_ROOT / "profiles" / "slurm" / "config.yaml"
CI_CONFIG = PROJECT_ROOT / "config" / "presets" / "ci.yaml"
CONFIG_GENERATION = yaml.safe_load((PROJECT_ROOT / "config" / "config.yaml").read_text())["generation"]
CONFIG_SFT = yaml.safe_load((PROJECT_ROOT / "config" / "config.yaml").read_text())["training"]["sft"]
TARGET = "results/alfworld/tiny/eval/sft/seed0/seen.jsonl"
SLICE_RULES = {"benchmark_data", "expert", "tiny_model", "sft", "evaluate"}
GPU_RULES = {"sft", "evaluate"}
ANY_GPU_RULES = {"evaluate"}  # keep the shipped `gpu_model: ""`: --gpus=1
RUN_LIMIT = 330  # seconds for the whole slice through SLURM (about 100 s here)
CLUSTER_TIMEOUT = 240  # package installation plus start


def _snakemake(
    workdir: Path, profile: str | Path | None, *args: str, limit: int, env=None, preset: Path = CI_CONFIG
):
    """snakemake on the CI preset (or `preset`), killed (not asked) after `limit` seconds."""
    cmd = ["timeout", "-s", "KILL", str(limit), sys.executable, "-m", "snakemake"]
    cmd += ["--snakefile", str(PROJECT_ROOT / "Snakefile"), "--directory", str(workdir)]
    if profile is not None:
        cmd += ["--profile", str(profile)]
    cmd += [*args, "--configfile", str(preset)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=limit + 30, env=env, cwd=PROJECT_ROOT)


def _dry_run_jobs(
    workdir: Path, *targets: str, preset: Path = CI_CONFIG, profile: str | Path = PROFILE.parent
) -> list[tuple[str, dict[str, str]]]:
    """(rule, resources) of every job of a dry run through the shipped profile, no cluster needed."""
    result = _snakemake(workdir, profile, "-n", *targets, limit=240, preset=preset)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    jobs = []
    for line in (result.stdout + result.stderr).splitlines():
        if m := re.match(r"^(?:local)?rule (\w+):$", line):
            jobs.append((m.group(1), {}))
        elif jobs and (m := re.match(r"^\s+resources: (.*)$", line)):
            jobs[-1][1].update(kv.split("=", 1) for kv in m.group(1).split(", ") if "=" in kv)
    assert jobs, result.stderr[-3000:]
    return jobs


def test_profile_sends_every_gpu_job_to_the_gpu_partition(tmp_path):
    """Tripwire for new rules: a job declaring `gpu` must get the GPU partition of the profile."""
    shipped = yaml.safe_load(PROFILE.read_text())
    cpu_partition = shipped["default-resources"]["slurm_partition"]
    gpu_partition = shipped["set-resources"]["sft"]["slurm_partition"]
    assert cpu_partition != gpu_partition
    jobs = _dry_run_jobs(tmp_path)  # rule all: every rule the default config reaches
    wrong = {
        rule
        for rule, res in jobs
        if res.get("slurm_partition") != (gpu_partition if res.get("gpu") else cpu_partition)
    }
    assert not wrong, f"add these rules to set-resources in {PROFILE} (`rule: *gpu_job`): {sorted(wrong)}"
    gpu_rules = {rule for rule, res in jobs if res.get("gpu")}
    assert GPU_RULES <= gpu_rules
    for rule in gpu_rules:  # CPU cores per GPU job come from the profile, not the login node
        assert rule in shipped["set-threads"], rule


@pytest.mark.parametrize("profile", ["slurm", "profiles/slurm"])
def test_the_profile_is_found_by_its_name_and_by_its_path(tmp_path, profile):
    """`snakemake --profile slurm ...` as users type it in the project folder (a clean clone has the link)."""
    assert (PROJECT_ROOT / "slurm").resolve() == PROFILE.parent.resolve()
    jobs = _dry_run_jobs(tmp_path, TARGET, profile=profile)  # run with the project folder as working dir
    gpu_partition = yaml.safe_load(PROFILE.read_text())["set-resources"]["sft"]["slurm_partition"]
    assert {rule for rule, _ in jobs} == SLICE_RULES
    assert all(res["slurm_partition"] == gpu_partition for rule, res in jobs if rule in GPU_RULES)


def test_paper_preset_dry_run_lists_every_job_with_its_resources(tmp_path):
    """The paper's run as a cluster user starts it: every job of table1 with its SLURM resources."""
    preset = PROJECT_ROOT / "config" / "presets" / "paper.yaml"
    paper = yaml.safe_load(preset.read_text())
    jobs = _dry_run_jobs(tmp_path, "results/table1.csv", preset=preset)
    shipped = yaml.safe_load(PROFILE.read_text())
    gpu_partition = shipped["set-resources"]["sft"]["slurm_partition"]
    per_rule: dict[str, int] = {}
    for rule, res in jobs:
        per_rule[rule] = per_rule.get(rule, 0) + 1
        assert int(res["mem_mb"]) > 0 and int(res["runtime"]) > 0, (rule, res)
        if rule in {"sft", "rft", "dpo", "hpl"}:  # multi-GPU training: accelerate + ZeRO-3
            assert res["gpu"] == str(paper["training"]["sft"]["gpus"]), (rule, res)
        if res.get("gpu"):
            assert res["slurm_partition"] == gpu_partition, (rule, res)
    shards = paper["generation"]["shards"]
    runs = len(paper["models"]) * len(paper["seeds"]) * 8  # table1's 8 methods
    splits = 2 + 1 + 1  # ALFWorld seen/unseen, WebShop test, InterCode-SQL test
    # each evaluation plays in `shards` GPU jobs, then its own job gathers them
    assert per_rule["evaluate_shard"] == runs * splits * shards and per_rule["evaluate"] == runs * splits
    assert per_rule["explore_shard"] == per_rule["step_rollouts_shard"] == shards * len(paper["models"]) * 3
    assert per_rule["sft"] == len(paper["models"]) * len(paper["seeds"]) * 3
    print({rule: per_rule[rule] for rule in sorted(per_rule)})


# ---- on a real cluster -------------------------------------------------------------------------------------


def _test_profile(folder: Path, cluster: SlurmCluster, *, cpu_partition: str | None = None) -> Path:
    """A copy of the shipped profile with the user's edit points set to the test cluster's."""
    profile = yaml.safe_load(PROFILE.read_text())
    shipped_gpu = profile["set-resources"]["sft"]["slurm_partition"]
    profile["default-resources"]["slurm_partition"] = cpu_partition or cluster.cpu_partition
    profile["default-resources"]["slurm_account"] = cluster.account
    for rule, resources in profile["set-resources"].items():
        if resources.get("slurm_partition") == shipped_gpu:
            resources = profile["set-resources"][rule] = dict(resources)  # the anchor shares one dict
            resources["slurm_partition"] = cluster.gpu_partition
            if rule not in ANY_GPU_RULES:  # the others name the GPU type: --gpus=fake:1
                resources["gpu_model"] = cluster.gpu_type
    # test-only: this machine has 2 cores and jobs take seconds, not hours
    profile["set-threads"] = {rule: 1 for rule in profile["set-threads"]}
    profile["slurm-init-seconds-before-status-checks"] = 1
    profile["slurm-keep-successful-logs"] = True
    profile["latency-wait"] = 5
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return folder


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0:
        pytest.skip("the test cluster's daemons run as root")
    if shutil.which("apt-get") is None and shutil.which("slurmctld") is None:
        pytest.skip("needs Debian's slurm packages (apt-get)")
    started = time.monotonic()
    try:
        with slurm_cluster() as running:
            assert time.monotonic() - started < CLUSTER_TIMEOUT
            yield running
    except ClusterError as error:
        pytest.fail(f"the SLURM test cluster did not start: {error}")


@pytest.fixture(scope="module")
def slice_run(cluster, tmp_path_factory):
    """The slice through SLURM; plus the tables when, with the sft row only, they need nothing more."""
    workdir = tmp_path_factory.mktemp("slurm_run")
    targets, config = [TARGET], []
    planned = _dry_run_jobs(workdir, TARGET, "results/table1.csv", "--config", "methods=[sft]")
    if {rule for rule, _ in planned} <= SLICE_RULES | {"tables"}:
        targets, config = [TARGET, "results/table1.csv"], ["--config", "methods=[sft]"]
    else:  # the tables grew new inputs: the slice alone
        planned = _dry_run_jobs(workdir, TARGET)
    profile = _test_profile(tmp_path_factory.mktemp("profile"), cluster)
    started = time.monotonic()
    result = _snakemake(workdir, profile, *targets, "--verbose", *config, limit=RUN_LIMIT, env=cluster.env)
    seconds = time.monotonic() - started
    (workdir / "snakemake.out").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, (
        f"exit {result.returncode} after {seconds:.0f} s\n{result.stderr[-6000:]}\n{cluster.diagnostics()}"
    )
    print(f"slice through SLURM: {len(planned)} jobs in {seconds:.0f} s")
    return workdir, result.stdout + result.stderr, planned, targets


def _rule_of(comment: str) -> str:
    """The rule name in the plugin's `--comment rule_<name>_wildcards_<values>`."""
    m = re.match(r"'?rule_(\w+?)(?:_wildcards_\S*?)?'?$", comment)
    assert m, comment
    return m.group(1)


def test_ci_slice_runs_through_sbatch(cluster, slice_run):
    workdir, output, planned, targets = slice_run
    episodes = read_jsonl(workdir / TARGET)
    wanted = yaml.safe_load(CI_CONFIG.read_text())["alfworld"]["eval_tasks"]["seen"]
    assert len(episodes) == wanted and all(ep["task_id"].startswith("valid_seen/") for ep in episodes)
    assert (workdir / "results/alfworld/tiny/train/sft/seed0/train_metrics.json").exists()
    for target in targets:
        assert (workdir / target).stat().st_size > 0
    planned_rules = sorted(rule for rule, _ in planned)
    assert SLICE_RULES <= set(planned_rules)

    # one sbatch per job, each with the resources the profile and the rules ask for
    calls = [line for line in output.splitlines() if "sbatch call: sbatch " in line]
    call_rules = [_rule_of(re.search(r"--comment (\S+)", call).group(1)) for call in calls]
    assert sorted(call_rules) == planned_rules, call_rules
    for rule, call in zip(call_rules, calls):
        assert f"-A {cluster.account}" in call, call
        if rule in GPU_RULES:
            gpus = "--gpus=1" if rule in ANY_GPU_RULES else f"--gpus={cluster.gpu_type}:1"
            assert f"-p {cluster.gpu_partition}" in call and gpus in call, call
        else:
            assert f"-p {cluster.cpu_partition}" in call and "--gpus" not in call, call
    by_call = dict(zip(call_rules, calls))
    assert "--mem 16000" in by_call["sft"] and "-t 240" in by_call["sft"]  # the rule's attempt-1 request
    assert "--mem 8000" in by_call["evaluate"] and "--mem 4000" in by_call["expert"]

    # SLURM's own accounting: every job COMPLETED, named by its rule, GPU jobs holding the GPU
    jobs = cluster.sacct(
        "JobID", "JobName", "Comment", "Partition", "Account", "State", "ExitCode", "AllocTRES"
    )
    assert sorted(_rule_of(job["Comment"]) for job in jobs) == planned_rules, jobs
    assert len({job["JobName"] for job in jobs}) == 1  # the run's id, which the plugin polls sacct by
    for job in jobs:
        rule = _rule_of(job["Comment"])
        assert job["State"] == "COMPLETED" and job["ExitCode"] == "0:0", job
        assert job["Account"] == cluster.account, job
        if rule in GPU_RULES:
            assert job["Partition"] == cluster.gpu_partition and "gres/gpu=1" in job["AllocTRES"], job
        else:
            assert job["Partition"] == cluster.cpu_partition and "gres/gpu" not in job["AllocTRES"], job

    # inside SLURM each job re-ran Snakemake (--verbose prints its environment): GPU jobs saw the GPU
    for rule in SLICE_RULES:
        logs = list((workdir / ".snakemake/slurm_logs" / f"rule_{rule}").glob("*/*.log"))
        assert logs, rule
        saw_gpu = "'CUDA_VISIBLE_DEVICES': '0'" in logs[0].read_text(errors="replace")
        assert saw_gpu == (rule in GPU_RULES), rule
    assert (workdir / "logs/alfworld/tiny/sft/seed0.log").stat().st_size > 0


def test_missing_partition_fails_at_sbatch_naming_the_rule(cluster, tmp_path):
    profile = _test_profile(tmp_path / "profile", cluster, cpu_partition="no_such_partition")
    result = _snakemake(tmp_path / "work", profile, TARGET, "--retries", "0", limit=120, env=cluster.env)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Error in rule benchmark_data" in output, output[-4000:]
    assert "SLURM sbatch failed" in output and "invalid partition specified: no_such_partition" in output
    assert not (tmp_path / "work/resources/alfworld/manifest.json").exists()


def test_job_over_its_memory_is_retried_with_more_then_fails_naming_out_of_memory(cluster, tmp_path):
    """The cluster kills a job over its --mem (OverMemoryKill); the profile's retry asks for twice the
    memory, and the second kill ends the run, the error pointing at SLURM's log with the reason."""
    profile = _test_profile(tmp_path / "profile", cluster)
    settings = yaml.safe_load((profile / "config.yaml").read_text())
    settings["default-resources"]["mem_mb"] = "40 * attempt"  # less than the job's own snakemake needs
    (profile / "config.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    target = "resources/alfworld/manifest.json"  # benchmark_data: a CPU rule on the default resources
    result = _snakemake(tmp_path / "work", profile, target, "--verbose", limit=RUN_LIMIT, env=cluster.env)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    calls = [line for line in output.splitlines() if "sbatch call: sbatch " in line]
    assert len(calls) == 2 and "--mem 40 " in calls[0] and "--mem 80 " in calls[1], calls
    assert "Error in rule benchmark_data" in output and "SLURM-job" in output, output[-4000:]
    # the reason: SLURM's log of each attempt, which the error message points to. This cluster kills by
    # polling (no cgroups in a container), so sacct says FAILED; a cgroup cluster says OUT_OF_MEMORY.
    slurm_logs = sorted((tmp_path / "work/.snakemake/slurm_logs/rule_benchmark_data").glob("*/*.log"))
    assert len(slurm_logs) == 2 and all("Exceeded job memory limit" in p.read_text() for p in slurm_logs)
    assert str(slurm_logs[-1].name) in output
    states = [
        job["State"]
        for job in cluster.sacct("JobID", "Comment", "State")
        if "benchmark_data" in job["Comment"]
    ]
    assert states[-2:] == ["FAILED", "FAILED"], states


RESUME_HP = {  # long enough to be cancelled midway: ~2 steps per epoch on the CI expert data
    "epochs": 60,
    "lr": 1.0e-3,
    "batch_size": 4,
    "grad_accum": 1,
    "warmup_ratio": 0.1,
    "scheduler": "cosine",
    "max_length": 1536,  # as the CI preset: a window that holds ALFWorld's opening (hpl.context)
    "save_steps": 5,
}


def test_cancelled_training_job_resumes_from_its_checkpoint(cluster, slice_run, tmp_path):
    """scancel an SFT job midway, rerun the workflow: the job resumes from its last checkpoint, which lives
    beside the rule's output (Snakemake deletes a failed job's output), and ends where a clean run ends."""
    workdir = slice_run[0]
    override = tmp_path / "resume.yaml"
    override.write_text(yaml.safe_dump({"training": {"sft": RESUME_HP}}))
    target = "results/alfworld/tiny/train/sft/seed1"
    scratch = workdir / f"{target}.checkpoints"
    profile = _test_profile(tmp_path / "profile", cluster)
    cmd = ["timeout", "-s", "KILL", str(RUN_LIMIT), sys.executable, "-m", "snakemake"]
    cmd += ["--snakefile", str(PROJECT_ROOT / "Snakefile"), "--directory", str(workdir)]
    cmd += ["--profile", str(profile), target, "--configfile", str(CI_CONFIG), str(override)]
    first_out = open(tmp_path / "first.out", "w")
    first = subprocess.Popen(
        cmd,
        env=cluster.env,
        cwd=PROJECT_ROOT,
        stdout=first_out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + RUN_LIMIT
        while not list(scratch.glob("checkpoint-*/trainer_state.json")):
            assert first.poll() is None and time.monotonic() < deadline, "no checkpoint before the job ended"
            time.sleep(0.2)
        jobs = cluster.run("squeue", "-h", "-o", "%i").stdout.split()
        assert jobs, "the training job is not in the queue"
        cluster.run("scancel", *jobs)
        while cluster.run("squeue", "-h", "-o", "%i").stdout.split():
            assert time.monotonic() < deadline, "the cancelled job stays in the queue"
            time.sleep(0.5)
        # snakemake-executor-plugin-slurm 2.8 does not notice a cancelled job (sacct says "CANCELLED by
        # <uid>", the plugin matches "CANCELLED"): stop the workflow as a user would (Ctrl-C), rerun it
        os.killpg(first.pid, signal.SIGINT)
        first.wait(timeout=90)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
        first_out.close()
    unlock = [*cmd[4:], "--unlock"]  # a workflow stopped hard leaves its lock behind
    subprocess.run(unlock, env=cluster.env, cwd=PROJECT_ROOT, capture_output=True, timeout=120, check=True)
    cancelled_at = max(
        int(p.parent.name.split("-")[1]) for p in scratch.glob("checkpoint-*/trainer_state.json")
    )
    assert not (workdir / target / "model.safetensors").exists()  # the job did not finish
    rerun = subprocess.run(
        cmd, env=cluster.env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=RUN_LIMIT + 30
    )
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    states = [
        job["State"] for job in cluster.sacct("JobID", "Comment", "State") if "rule_sft" in job["Comment"]
    ]
    assert states[-2].startswith("CANCELLED") and states[-1] == "COMPLETED", states
    log = (workdir / "logs/alfworld/tiny/sft/seed1.log").read_text()
    resumed = [int(m) for m in re.findall(r"resuming from .*checkpoint-(\d+)", log)]
    assert resumed == [cancelled_at], log[-3000:]
    metrics = json.loads((workdir / target / "train_metrics.json").read_text())
    assert metrics["steps"] == RESUME_HP["epochs"] * -(-metrics["examples"] // RESUME_HP["batch_size"])
    assert not scratch.exists()  # removed once the model is saved

    # a clean, uninterrupted run of the same training ends at the same weights
    import torch

    from hpl.models import load_model
    from hpl.sft import train_sft

    torch.set_num_threads(1)  # as the SLURM job did; two threads on two busy cores crawl
    clean = tmp_path / "clean"
    records = read_jsonl(workdir / "results/alfworld/expert/train.jsonl")
    generation = {**CONFIG_GENERATION, **yaml.safe_load(CI_CONFIG.read_text())["generation"]}  # as the job
    hp = {**CONFIG_SFT, **yaml.safe_load(CI_CONFIG.read_text())["training"]["sft"], **RESUME_HP}  # as the job
    train_sft(str(workdir / "results/alfworld/tiny/base"), records, str(clean), hp, 1, generation)
    resumed_model, _ = load_model(workdir / target)
    clean_model, _ = load_model(clean)
    for (name, a), (_, b) in zip(resumed_model.named_parameters(), clean_model.named_parameters()):
        assert (a - b).abs().max() < 1e-4, name
