"""Behaviour cloning (SFT): next-token loss on the agent's turns of expert trajectories.

Training runs through `transformers.Trainer` (AdamW, cosine schedule with warmup, gradient accumulation,
checkpoints to resume from, DeepSpeed/accelerate on a cluster); this module only turns trajectories into
masked examples and pads batches. Examples follow the shared context rule (`hpl.context`): whole
conversations when they fit the model, else windows equal to what generation shows; the rule (reply
budget, window) and a data-fit report are written with the model (`context.json`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpl.chat import IGNORE_INDEX
from hpl.context import ContextRule, data_fit, derive_rule, training_sequences, write_rule
from hpl.launch import is_main_process, wait_for_everyone


@dataclass
class PadCollator:
    pad_id: int

    def __call__(self, features: list[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        ids, labels, mask = [], [], []
        for f in features:
            gap = width - len(f["input_ids"])
            ids.append(f["input_ids"] + [self.pad_id] * gap)
            labels.append(f["labels"] + [IGNORE_INDEX] * gap)
            mask.append([1] * len(f["input_ids"]) + [0] * gap)
        return {
            "input_ids": torch.tensor(ids),
            "labels": torch.tensor(labels),
            "attention_mask": torch.tensor(mask),
        }


def sft_examples(tokenizer, records: list[dict], window: int) -> list[dict[str, list[int]]]:
    """The training sequences of `records` under the shared context rule (`window` prompt tokens)."""
    examples = []
    for record in records:
        what = f"trajectory {record.get('id', '?')!r}"
        for enc in training_sequences(tokenizer, record["conversations"], window, what=what).sequences:
            if any(label != IGNORE_INDEX for label in enc.labels):
                examples.append({"input_ids": enc.input_ids, "labels": enc.labels})
    return examples


def context_rule(
    model, tokenizer, records: list[dict], hp: dict, generation: dict
) -> tuple[ContextRule, dict]:
    """The context rule of a model trained on `records` (`hpl.context.derive_rule`) and their data fit."""
    import logging

    context = model.config.max_position_embeddings
    rule = derive_rule(tokenizer, records, generation, context, hp.get("max_length"))
    fit = data_fit(tokenizer, records, rule)
    logging.getLogger(__name__).info("context rule %s; data fit %s", rule, fit)
    return rule, fit


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
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(scratch),
        per_device_train_batch_size=hp["batch_size"],
        gradient_accumulation_steps=hp.get("grad_accum", 1),
        learning_rate=float(hp["lr"]),
        num_train_epochs=hp["epochs"],
        max_steps=hp.get("max_steps") or -1,
        lr_scheduler_type=hp.get("scheduler", "cosine"),
        warmup_steps=hp.get("warmup_ratio", 0.1),  # a float < 1 is a ratio in transformers 5
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


def length_grouped_sampler(lengths: list[int], batch_size: int, seed: int):
    """transformers' LengthGroupedSampler (batches of similar lengths, in shuffled megabatches), its order
    drawn from (seed, epoch): Trainer tells it the epoch, so a run resumed mid-epoch from a checkpoint sees
    the same batches as an uninterrupted one. The stock sampler draws from the global random state, which
    a resumed run restores as of the checkpoint, not as of the epoch's start."""
    import torch
    from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices

    class EpochSeededSampler(LengthGroupedSampler):
        epoch = 0

        def set_epoch(self, epoch: int) -> None:
            self.epoch = epoch

        def __iter__(self):
            generator = torch.Generator().manual_seed(seed * 1_000_003 + self.epoch)
            return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))

    return EpochSeededSampler(batch_size, lengths=lengths)


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


def train_sft(
    model_path: str,
    records: list[dict],
    out_dir: str,
    hp: dict[str, Any],
    seed: int = 0,
    generation: dict | None = None,
) -> dict:
    """Fine-tune `model_path` on `records`; save the model to `out_dir`; return training metrics.

    `generation` (the config's block) sets the reply budget and window (null: from the data), recorded
    with the model (`hpl.context`).

    Resumes from the last checkpoint in `<out_dir>.checkpoints` when a previous run was killed.
    """
    from transformers import Trainer

    from hpl.models import load_model

    out = Path(out_dir)
    model, tokenizer = load_model(model_path)
    rule, fit = context_rule(model, tokenizer, records, hp, generation or {})
    examples = sft_examples(tokenizer, records, rule.window)
    if not examples:
        raise ValueError(f"no SFT example with agent tokens among {len(records)} trajectories")
    trainer = Trainer(
        model=model,
        args=training_arguments(scratch_dir(out), hp, seed),
        train_dataset=examples,
        data_collator=PadCollator(tokenizer.pad_token_id),
        callbacks=training_callbacks(),
    )
    if hp.get("group_by_length"):  # whole conversations vary 10x in length: less padding per batch
        sampler = length_grouped_sampler([len(e["input_ids"]) for e in examples], hp["batch_size"], seed)
        trainer._get_train_sampler = lambda *args, **kwargs: sampler  # Trainer's hook for its sampler
    started = time.time()
    result = trainer.train(resume_from_checkpoint=last_checkpoint(scratch_dir(out)))
    seconds = time.time() - started
    # tokens actually trained: the epoch's tokens times the epochs done (max_steps may stop early)
    steps_per_epoch = -(-len(examples) // (hp["batch_size"] * hp.get("grad_accum", 1)))
    tokens = sum(len(e["input_ids"]) for e in examples) * result.global_step / steps_per_epoch
    trainer.save_model(str(out))  # every process: ZeRO-3 gathers the weight shards here
    metrics = {
        "examples": len(examples),
        "train_loss": result.training_loss,
        "steps": result.global_step,
        "seconds": round(seconds, 2),
        "tokens_per_second": round(tokens / seconds, 1) if seconds else None,
        "hyperparameters": hp,
        "seed": seed,
        "base_model": str(model_path),
        "data_fit": fit,
    }
    if is_main_process():  # one writer when accelerate launched several processes (hpl.launch)
        tokenizer.save_pretrained(str(out))
        write_rule(out, rule, fit)
        (out / "train_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    wait_for_everyone()
    drop_scratch(scratch_dir(out))
    return metrics
