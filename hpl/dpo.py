"""DPO on multi-turn preference pairs, at one or several granularities (ETO, IPR, HPL).

Why not TRL's DPOTrainer: its completions are single assistant messages, with every completion token
trained. Here a chosen/rejected continuation spans several turns with environment observations between the
agent's turns, and only the agent's tokens may count (REFERENCE.md section 2). So the loss is this
project's own, and `transformers.Trainer` does the rest (optimiser, schedule, checkpoints, DeepSpeed).

- A sequence's log-probability is the sum over its agent tokens (labels != -100), as in DPO.
- Prompt + continuation are encoded by the shared context rule of pi_ref (`hpl.context`, recorded with
  the SFT model): each agent turn is scored in the context generation gives it. A continuation too long
  for one window becomes several windows, whose log-probs are summed (`owner` in a batch).
- Reference log-probs come from pi_ref once, before training (pi_ref is frozen; only one model is in memory
  while training, as with TRL's `precompute_ref_log_probs`).
- Each pair belongs to a level ("traj", "step", "group"). The loss of a batch is
  sum over levels present of weight[level] * mean DPO loss of that level's pairs, plus, where the level asks
  for it (IPR), nll_weight * the mean per-token NLL of the chosen continuation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hpl.chat import IGNORE_INDEX, Encoded
from hpl.context import ContextError, ContextRule, copy_rule, read_rule, training_sequences
from hpl.launch import is_main_process, wait_for_everyone
from hpl.trainer import right_padded


def dpo_losses(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float):
    """Per-pair DPO loss: -log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r)))."""
    import torch.nn.functional as F

    margin = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    return -F.logsigmoid(beta * margin)


def sequence_logps(model, input_ids, labels):
    """(summed log-prob of the label tokens, number of label tokens) per right-padded sequence (no mask
    needed: hpl.trainer.right_padded)."""
    import torch

    logits = model(input_ids=input_ids).logits[:, :-1, :]
    targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    safe = targets.masked_fill(~mask, 0)
    token_logps = torch.gather(logits.log_softmax(-1), 2, safe.unsqueeze(-1)).squeeze(-1)
    return (token_logps * mask).sum(-1), mask.sum(-1)


@dataclass
class LevelSettings:
    weight: float = 1.0
    nll_weight: float = 0.0


def level_settings(levels: dict) -> dict[str, LevelSettings]:
    """{level: LevelSettings} from the method spec's `levels` (plain dicts, as in the config, or settings)."""
    return {k: v if isinstance(v, LevelSettings) else LevelSettings(**v) for k, v in levels.items()}


def hierarchical_loss(
    levels: Sequence[str],
    losses,
    chosen_nll,
    settings: dict[str, LevelSettings],
):
    """Weighted sum over levels of each level's mean loss (DPO + optional NLL of the chosen side)."""
    import torch

    total = torch.zeros((), dtype=losses.dtype, device=losses.device)
    for level in sorted(set(levels)):
        idx = torch.tensor([i for i, name in enumerate(levels) if name == level], device=losses.device)
        s = settings[level]
        level_loss = losses[idx].mean()
        if s.nll_weight:
            level_loss = level_loss + s.nll_weight * chosen_nll[idx].mean()
        total = total + s.weight * level_loss
    return total


@dataclass
class PreferenceExample:
    level: str
    chosen: list[Encoded]  # the windows of prompt + chosen continuation (usually one)
    rejected: list[Encoded]
    ref_chosen: float = 0.0
    ref_rejected: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)


def encode_side(
    tokenizer, prompt: list[dict], continuation: list[dict], window: int, what: str
) -> list[Encoded]:
    """Prompt + continuation under the shared context rule, loss on the continuation's agent turns."""
    return training_sequences(tokenizer, [*prompt, *continuation], window, len(prompt), what).sequences


def encode_pair(tokenizer, pair: dict, level: str, window: int) -> PreferenceExample:
    what = f"{level} pair {pair['id']!r}"
    chosen = encode_side(tokenizer, pair["prompt"], pair["chosen"], window, what + " (chosen)")
    rejected = encode_side(tokenizer, pair["prompt"], pair["rejected"], window, what + " (rejected)")
    return PreferenceExample(level, chosen, rejected, meta={"id": pair["id"]})


def collate(examples: list[PreferenceExample], pad_id: int) -> dict[str, Any]:
    """Every window of the chosen sides, then of the rejected sides, in one batch (one forward pass);
    `owner` maps each row to its sequence: pair i's chosen side is i, its rejected side n + i."""
    import torch

    n = len(examples)
    rows: list[Encoded] = []
    owner: list[int] = []
    for offset, side in ((0, "chosen"), (n, "rejected")):
        for i, example in enumerate(examples):
            windows = getattr(example, side)
            rows += windows
            owner += [offset + i] * len(windows)
    return {
        "input_ids": right_padded([r.input_ids for r in rows], pad_id),
        "labels": right_padded([r.labels for r in rows], IGNORE_INDEX),
        "owner": torch.tensor(owner),
        "ref_chosen": torch.tensor([e.ref_chosen for e in examples]),
        "ref_rejected": torch.tensor([e.ref_rejected for e in examples]),
        "levels": [e.level for e in examples],
    }


def side_logps(model, batch: dict[str, Any]):
    """(summed log-prob, label tokens) of each chosen then rejected side: its windows' rows added up."""
    logps, counts = sequence_logps(model, batch["input_ids"], batch["labels"])
    owner = batch.get("owner")
    if owner is None:  # one row per side
        return logps, counts
    owner = owner.to(logps.device)
    sides = 2 * len(batch["levels"])
    summed = logps.new_zeros(sides).index_add(0, owner, logps)
    return summed, counts.new_zeros(sides).index_add(0, owner, counts)


def precompute_reference(model, examples: list[PreferenceExample], pad_id: int, batch_size: int = 8) -> None:
    """Fill ref_chosen / ref_rejected of `examples` with the frozen reference model's log-probs."""
    import os

    import torch

    if torch.cuda.is_available():  # this process's GPU (LOCAL_RANK under accelerate launch)
        model.to(f"cuda:{os.environ.get('LOCAL_RANK', 0)}")
    model.eval()
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            chunk = examples[start : start + batch_size]
            batch = collate(chunk, pad_id)
            device = next(model.parameters()).device
            for key in ("input_ids", "labels"):
                batch[key] = batch[key].to(device)
            logps, _ = side_logps(model, batch)
            for i, example in enumerate(chunk):
                example.ref_chosen = float(logps[i])
                example.ref_rejected = float(logps[len(chunk) + i])


def batch_loss(model, batch: dict[str, Any], beta: float, settings: dict[str, LevelSettings]):
    """The hierarchical DPO loss of a collated batch, and per-level metrics."""
    logps, counts = side_logps(model, batch)
    n = len(batch["levels"])
    chosen, rejected = logps[:n], logps[n:]
    losses = dpo_losses(chosen, rejected, batch["ref_chosen"], batch["ref_rejected"], beta)
    chosen_nll = -chosen / counts[:n].clamp(min=1)
    loss = hierarchical_loss(batch["levels"], losses, chosen_nll, settings)
    margins = (chosen - batch["ref_chosen"]) - (rejected - batch["ref_rejected"])
    metrics = {
        "dpo_loss": float(losses.mean()),
        "reward_margin": float(beta * margins.mean()),
        "reward_accuracy": float((margins > 0).float().mean()),
    }
    return loss, metrics


def make_trainer(
    model,
    examples: list[PreferenceExample],
    args,
    pad_id: int,
    beta: float,
    settings: dict[str, LevelSettings],
):
    """A transformers.Trainer whose loss is `batch_loss` (examples already hold reference log-probs)."""
    from transformers import Trainer

    class PreferenceTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss, metrics = batch_loss(model, inputs, beta, settings)
            if self.state.global_step % max(1, self.args.logging_steps) == 0 and model.training:
                self.log(metrics)
            return (loss, None) if return_outputs else loss

    from hpl.trainer import training_callbacks

    return PreferenceTrainer(
        model=model,
        args=args,
        callbacks=training_callbacks(),
        train_dataset=examples,
        data_collator=lambda chunk: collate(chunk, pad_id),
    )


def load_examples(tokenizer, pairs_by_level: dict[str, list[dict]], window: int) -> list[PreferenceExample]:
    examples = []
    for level, pairs in pairs_by_level.items():
        examples += [encode_pair(tokenizer, pair, level, window) for pair in pairs]
    return examples


def reference_rule(ref_path: str, hp: dict[str, Any]) -> ContextRule:
    """pi_ref's context rule (recorded by its SFT job): DPO scores every turn as generation shows it.
    `max_length`, where set, must hold a full window and reply, else the two would disagree."""
    rule = read_rule(ref_path)
    if rule is None:
        raise ContextError(
            f"{ref_path} has no context rule (context.json): the reference must be an SFT model trained here"
        )
    if hp.get("max_length") is not None and hp["max_length"] < rule.sequence:
        raise ContextError(
            f"training.dpo.max_length is {hp['max_length']}, shorter than pi_ref's window + reply "
            f"({rule.window} + {rule.reply} tokens, {ref_path}/context.json): raise it or set it to null"
        )
    return rule


def train_dpo(
    ref_path: str,
    pairs_by_level: dict[str, list[dict]],
    out_dir: str,
    hp: dict[str, Any],
    settings: dict[str, LevelSettings],
    seed: int = 0,
    init_path: str | None = None,
    scratch: str | None = None,
) -> dict:
    """DPO from `init_path` (default pi_ref) with pi_ref as the frozen reference; save to `out_dir`.

    The reference log-probs are computed first with pi_ref's weights; training then needs one model only.
    Resumes from the last checkpoint in `scratch` (default `<out_dir>.checkpoints`, hpl.trainer.scratch_dir),
    which is removed at the end unless the caller gave it (HPL keeps its phases' until the last phase).
    """
    import json
    import time
    from pathlib import Path

    from hpl.models import load_model
    from hpl.trainer import drop_scratch, last_checkpoint, scratch_dir, training_arguments

    settings = level_settings(settings)
    if hp.get("group_by_length"):
        raise ValueError("training.dpo.group_by_length: only SFT groups batches by length (set it under sft)")
    total = sum(len(p) for p in pairs_by_level.values())
    if total == 0:
        raise ValueError(f"no preference pairs to train on (levels: {', '.join(pairs_by_level) or 'none'})")
    out = Path(out_dir)
    work = Path(scratch) if scratch else scratch_dir(out)
    ref_model, tokenizer = load_model(ref_path)
    rule = reference_rule(ref_path, hp)
    examples = load_examples(tokenizer, pairs_by_level, rule.window)
    precompute_reference(ref_model, examples, tokenizer.pad_token_id, batch_size=hp["batch_size"])
    model = ref_model if init_path in (None, ref_path) else load_model(init_path)[0]
    model.train()
    trainer = make_trainer(
        model, examples, training_arguments(work, hp, seed), tokenizer.pad_token_id, hp["beta"], settings
    )
    started = time.time()
    result = trainer.train(resume_from_checkpoint=last_checkpoint(work))
    trainer.save_model(str(out))  # every process: ZeRO-3 gathers the weight shards here
    metrics = {
        "pairs": {level: len(p) for level, p in pairs_by_level.items()},
        "train_loss": result.training_loss,
        "steps": result.global_step,
        "seconds": round(time.time() - started, 2),
        "hyperparameters": hp,
        "levels": {k: vars(v) for k, v in settings.items()},
        "seed": seed,
        "reference": str(ref_path),
    }
    if is_main_process():  # one writer when accelerate launched several processes (hpl.launch)
        tokenizer.save_pretrained(str(out))
        copy_rule(ref_path, out)  # generation with this model uses pi_ref's rule
        (out / "train_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    wait_for_everyone()
    if scratch is None:
        drop_scratch(work)
    return metrics


PHASES = (1, 2, 3)


def phase_pairs(
    traj: list[dict],
    step: list[dict],
    group: list[dict],
    phase: int,
    variant: str,
    levels: dict,
    thresholds: dict,
) -> dict[str, list[dict]]:
    """The pairs of one curriculum phase: trajectory and step pairs throughout, group pairs of the phase."""
    from hpl.curriculum import pairs_for_phase

    available = {"traj": traj, "step": step}
    if "group" in levels:
        available["group"] = pairs_for_phase(
            group, phase, variant, thresholds["length"], thresholds["difficulty"]
        )
    return {level: available[level] for level in levels}


def train_hierarchical(
    ref_path: str,
    traj: list[dict],
    step: list[dict],
    group: list[dict],
    out_dir: str,
    hp: dict[str, Any],
    settings: dict[str, LevelSettings],
    variant: str,
    thresholds: dict,
    seed: int = 0,
    log=None,
) -> dict:
    """HPL: L = sum_level w_level * L_level, phases in order, a checkpoint per phase (`out_dir/phaseK`).

    Each phase starts from the previous phase's checkpoint (phase 1 from pi_ref); pi_ref stays the
    reference throughout. A phase whose group level has no pairs is skipped with a warning showing the
    bucket grid (its checkpoint is the previous one, so per-phase evaluation still has a model). A phase
    whose folder holds `train_metrics.json` is complete and is not trained again (resume).
    """
    import json
    import logging
    import shutil
    from pathlib import Path

    from hpl.curriculum import bucket_counts, format_grid
    from hpl.trainer import drop_scratch, scratch_dir

    log = log or logging.getLogger(__name__)
    settings = level_settings(settings)
    out = Path(out_dir)
    previous, summary = ref_path, {}
    for phase in PHASES:
        target = out / f"phase{phase}"
        pairs = phase_pairs(traj, step, group, phase, variant, settings, thresholds)
        trained = (target / "train_metrics.json").exists()
        wait_for_everyone()  # all processes look before the main one writes this phase's folder
        if trained:
            log.info("phase %d already trained", phase)
        elif "group" in pairs and not pairs["group"]:
            grid = format_grid(bucket_counts(group, thresholds["length"], thresholds["difficulty"]), variant)
            log.warning(
                "phase %d (%s curriculum) has no group pairs; skipped. Buckets:\n%s", phase, variant, grid
            )
            if is_main_process():
                if target.exists():
                    shutil.rmtree(target)
                shutil.copytree(previous, target)
                (target / "train_metrics.json").write_text(
                    json.dumps({"skipped": True, "phase": phase}) + "\n"
                )
            wait_for_everyone()
        else:
            log.info("phase %d: %s", phase, {level: len(p) for level, p in pairs.items()})
            # phase checkpoints beside the output folder, which Snakemake deletes if the job fails
            scratch = str(scratch_dir(out) / f"phase{phase}")
            train_dpo(
                ref_path,
                pairs,
                str(target),
                hp,
                settings,
                seed=seed,
                init_path=str(previous),
                scratch=scratch,
            )
        summary[f"phase{phase}"] = json.loads((target / "train_metrics.json").read_text())
        previous = str(target)
    if is_main_process():
        (out / "train_metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    wait_for_everyone()
    drop_scratch(scratch_dir(out))
    return summary
