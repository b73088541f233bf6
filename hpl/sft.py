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
from hpl.trainer import copy_model, right_padded


@dataclass
class PadCollator:
    pad_id: int

    def __call__(self, features: list[dict[str, list[int]]]) -> dict[str, Any]:
        # right padding and no attention mask: see hpl.trainer.right_padded
        return {
            "input_ids": right_padded([f["input_ids"] for f in features], self.pad_id),
            "labels": right_padded([f["labels"] for f in features], IGNORE_INDEX),
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
    from hpl.trainer import drop_scratch, last_checkpoint, scratch_dir, training_arguments, training_callbacks

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


def copy_sft_model(sft_dir: str | Path, out_dir: str | Path) -> dict:
    """RFT's model when pi_ref had no successful sample to add: RFT would then train SFT's data with SFT's
    settings and seed, which gives SFT's weights bit for bit on one machine (benchmarks/determinism.py),
    so SFT's model of the seed is copied instead of trained again. Returns its metrics, marked as copied."""
    source = Path(sft_dir)
    metrics = json.loads((source / "train_metrics.json").read_text())
    # the training that made these weights: SFT's
    return copy_model(source, out_dir, {**metrics, "copied_from": str(source)})
