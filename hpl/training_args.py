"""The training arguments of every training run here: transformers' own, with a warmup that never eats a
short training's only steps.

A module of its own because the Trainer pickles its arguments into each checkpoint, so their class must be
importable by name (and importing it loads transformers, which hpl.trainer defers)."""

from __future__ import annotations

import math

from transformers import TrainingArguments


def warmup_steps(total_steps: int, ratio: float) -> int:
    """Linear-warmup steps for a training of `total_steps`: the ratio's whole steps, rounded down.

    transformers rounds up (ceil(0.1 x 3) = 1), and a warmup's first step has learning rate 0, so a training
    shorter than 1 / ratio steps lost its first step: IPR's single step on the embedded default's 3 step
    pairs left pi_ref unchanged. Rounded down, a short training keeps every step; a long one, as in the
    paper, warms up for at most one step less."""
    return math.floor(total_steps * ratio + 1e-9)  # the epsilon keeps 0.1 x 30 at 3, not 2


class HPLTrainingArguments(TrainingArguments):
    """TrainingArguments whose warmup ratio (a warmup_steps below 1) rounds down: see warmup_steps."""

    def get_warmup_steps(self, num_training_steps: int) -> int:
        if self.warmup_steps >= 1:
            return int(self.warmup_steps)
        return warmup_steps(num_training_steps, self.warmup_steps)
