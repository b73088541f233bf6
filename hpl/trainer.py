"""The Trainer setup SFT and DPO share: training arguments from the config's training block, checkpoints
in a scratch folder beside the output (resumable after a kill), the callbacks of every run, and how a
batch of sequences is padded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hpl.launch import is_main_process


def right_padded(rows: list[list[int]], value: int):
    """`rows` as one tensor, each padded on the right with `value` to the longest.

    Batches padded this way need no attention mask, and get none: under causal attention a real token never
    sees the pads after it, and pads carry no labels, so the loss is the same with or without the mask.
    Without it SDPA runs its causal kernel instead of the masked one: on CPU 1.36x faster per SFT step on
    WebShop's long conversations, 1.13x on InterCode-SQL's short ones (benchmarks/bench_training.py).
    """
    import torch

    width = max(len(r) for r in rows)
    return torch.tensor([r + [value] * (width - len(r)) for r in rows])


def copy_model(source: str | Path, out_dir: str | Path, metrics: dict) -> dict:
    """A model folder copied whole, with `metrics` as its train_metrics.json: for a training whose result is
    its starting model (RFT with SFT's data, DPO with no pair). Written in one step through a `.partial`
    folder, so a killed copy leaves no output behind. Returns `metrics`."""
    import json
    import shutil

    out = Path(out_dir)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(source, partial)
    (partial / "train_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    partial.rename(out)
    return metrics


def scratch_dir(out_dir: str | Path) -> Path:
    """Where the training run of `out_dir` keeps its Trainer checkpoints: beside the folder, not in it.

    Snakemake deletes the output of a failed or cancelled job before running it again, so a checkpoint
    inside it could never be resumed from; `<out>.checkpoints` survives, and is removed (`drop_scratch`)
    once the model is saved.
    """
    out = Path(out_dir)
    return out.with_name(out.name + ".checkpoints")


def drop_scratch(folder: Path) -> None:
    import shutil

    if is_main_process():
        shutil.rmtree(folder, ignore_errors=True)


def save_at_end():
    """A Trainer callback that also checkpoints the last step, so a finished phase of a multi-phase job
    resumes as finished (HPL) rather than from its last `save_steps` multiple."""
    from transformers import TrainerCallback

    class SaveAtEnd(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= state.max_steps:
                control.should_save = True
            return control

    return SaveAtEnd()


def training_callbacks() -> list:
    """Callbacks of every training run here (a module-level hook, so tests can add a simulated kill)."""
    return [save_at_end()]


def training_arguments(scratch: Path, hp: dict[str, Any], seed: int, **extra: Any):
    """transformers TrainingArguments from the config's training block (keys as in config/schema);
    checkpoints go to `scratch` (see scratch_dir)."""
    from hpl.training_args import HPLTrainingArguments

    return HPLTrainingArguments(
        output_dir=str(scratch),
        per_device_train_batch_size=hp["batch_size"],
        gradient_accumulation_steps=hp.get("grad_accum", 1),
        learning_rate=float(hp["lr"]),
        num_train_epochs=hp["epochs"],
        max_steps=hp.get("max_steps") or -1,
        lr_scheduler_type=hp.get("scheduler", "cosine"),
        warmup_steps=hp.get("warmup_ratio", 0.1),  # a float < 1 is a ratio (rounded down: warmup_steps)
        weight_decay=hp.get("weight_decay", 0.0),
        logging_steps=hp.get("logging_steps", 10),
        save_strategy="steps",
        save_steps=hp.get("save_steps", 200),
        save_total_limit=1,
        seed=seed,
        data_seed=seed,
        report_to=[],
        disable_tqdm=False,
        use_cpu=not _cuda(),
        bf16=_cuda() and hp.get("bf16", True),
        deepspeed=hp.get("deepspeed"),
        dataloader_num_workers=0,
        remove_unused_columns=False,
        ddp_find_unused_parameters=False,  # every parameter is used; skips DDP's extra graph walk
        **extra,
    )


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def last_checkpoint(scratch: Path) -> str | None:
    """The newest Trainer checkpoint a killed run left in `scratch` (None: start afresh)."""
    import logging

    from transformers.trainer_utils import get_last_checkpoint

    found = get_last_checkpoint(str(scratch)) if scratch.is_dir() else None
    if found:
        logging.getLogger(__name__).info("resuming from %s", found)
    return found
