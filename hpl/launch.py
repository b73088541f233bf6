"""Where a training run's processes come from.

A training rule (sft, rft, dpo, hpl) calls `train(task, kwargs, processes)`, `task` being the training
function as "module:function" (e.g. "hpl.sft:train_sft"; written out in the script so that the rule's
code fingerprint, hpl.fingerprint, follows it):

- one process (a CPU, or the one GPU of a job): the training function runs inside the Snakemake job;
- N > 1 processes (one per GPU the job was given): `accelerate launch --multi_gpu --num_processes N` starts
  N copies of `python -m hpl.launch TASK ARGS.json`. transformers' Trainer picks up the distributed setup
  from the launcher, and DeepSpeed ZeRO-3 from `training.*.deepspeed` (config/deepspeed_zero3.json in the
  paper preset); gradient accumulation comes from `training.*.grad_accum`.

Only the main process writes metrics and the tokenizer; every process takes part in `save_model` (ZeRO-3
gathers the shards there). On a machine without GPUs the same multi-process path runs on CPUs with the
gloo backend, which is how tests/test_launch.py checks it here.
"""

from __future__ import annotations

import importlib
import json
import logging
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

TASK = re.compile(r"^hpl(\.\w+)+:\w+$")  # a training function of this library, "module:function"


class LaunchError(RuntimeError):
    """A training launch that cannot work as configured (the message says why)."""


def processes_for(gpus: int, visible: int) -> int:
    """Processes to start: one per GPU the job asked for, or one where the machine has no GPU."""
    if visible == 0:
        return 1
    if gpus > visible:
        raise LaunchError(f"the job asked for {gpus} GPUs but sees {visible} (CUDA_VISIBLE_DEVICES?)")
    return max(1, gpus)


def visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def accelerate_command(task: str, args_file: str, processes: int) -> list[str]:
    """The `accelerate launch` command line that runs `task` in `processes` processes."""
    from hpl.llm_server import free_port

    _check(task)
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes)]
    command += ["--num_machines", "1", "--main_process_port", str(free_port()), "--dynamo_backend", "no"]
    # several processes go through torch.distributed.run (--multi_gpu); on CPUs too, where the Trainer
    # (use_cpu) picks the gloo backend: accelerate's own --cpu path would need mpirun
    command += ["--multi_gpu"] if processes > 1 else []
    return command + ["--mixed_precision", "no", "-m", "hpl.launch", task, args_file]


def _check(task: str) -> None:
    if not TASK.match(task):
        raise LaunchError(
            f"training task {task!r} is not an hpl function as 'module:function' (hpl.sft:train_sft)"
        )


def run_task(task: str, kwargs: dict[str, Any]) -> dict:
    _check(task)
    module, name = task.split(":")
    return getattr(importlib.import_module(module), name)(**kwargs)


def train(
    task: str,
    kwargs: dict[str, Any],
    processes: int = 1,
    log: logging.Logger | None = None,
) -> dict:
    """Run training `task` with `kwargs` (JSON-able; `out_dir` among them) in `processes` processes.

    Returns the run's metrics (what the training function returns; read back from
    `out_dir/train_metrics.json` for a multi-process run).
    """
    log = log or logging.getLogger(__name__)
    if processes <= 1:
        return run_task(task, kwargs)
    out = Path(kwargs["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    args_file = out / "launch_args.json"
    args_file.write_text(json.dumps(kwargs, indent=2) + "\n")
    command = accelerate_command(task, str(args_file), processes)
    log.info("launching %d processes: %s", processes, " ".join(command))
    done = subprocess.run(command, capture_output=True, text=True)
    for line in (done.stdout + done.stderr).splitlines():
        log.info("[accelerate] %s", line)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-60:])
        raise LaunchError(f"accelerate launch of {task} failed (exit {done.returncode}):\n{tail}")
    args_file.unlink()
    return json.loads((out / "train_metrics.json").read_text())


def is_main_process() -> bool:
    """True outside a distributed run and on rank 0 inside one."""
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def wait_for_everyone() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _main(argv: list[str]) -> None:
    from accelerate import PartialState

    task, args_file = argv
    PartialState()  # joins the process group the launcher set up, before any rank-dependent step
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    run_task(task, json.loads(Path(args_file).read_text()))


if __name__ == "__main__":
    _main(sys.argv[1:])
