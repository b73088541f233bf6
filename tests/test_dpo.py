"""DPO, IPR and hierarchical losses against hand computations on a two-token toy model."""

import math

import pytest
import torch

from hpl.chat import IGNORE_INDEX
from hpl.dpo import LevelSettings, batch_loss, dpo_losses, hierarchical_loss, sequence_logps


class TwoTokenModel(torch.nn.Module):
    """Vocabulary {0, 1}; next-token logits are a learned table indexed by the current token."""

    def __init__(self, table):
        super().__init__()
        self.table = torch.nn.Parameter(torch.tensor(table, dtype=torch.float))

    def forward(self, input_ids):
        return type("Out", (), {"logits": self.table[input_ids]})()


def log_softmax_row(row, token):
    return row[token] - math.log(sum(math.exp(v) for v in row))


TABLE = [[0.3, -0.2], [1.0, 0.5]]  # logits after token 0, after token 1


def test_sequence_logps_sums_only_labelled_tokens():
    model = TwoTokenModel(TABLE)
    ids = torch.tensor([[0, 1, 1, 0]])
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 1, 0]])  # loss on tokens 2 and 3 only
    logp, count = sequence_logps(model, ids, labels)
    expected = log_softmax_row(TABLE[1], 1) + log_softmax_row(TABLE[1], 0)
    assert float(logp[0]) == pytest.approx(expected, abs=1e-6) and int(count[0]) == 2


def test_dpo_loss_by_hand():
    beta = 0.3
    pc, pr, rc, rr = -1.0, -2.5, -1.2, -2.0
    loss = dpo_losses(torch.tensor([pc]), torch.tensor([pr]), torch.tensor([rc]), torch.tensor([rr]), beta)
    margin = (pc - rc) - (pr - rr)
    assert float(loss[0]) == pytest.approx(-math.log(1 / (1 + math.exp(-beta * margin))), abs=1e-6)


def _batch(levels):
    # pair i: chosen = [0, 1, 1], rejected = [0, 0, 0]; loss on the last two tokens
    n = len(levels)
    ids = torch.tensor([[0, 1, 1]] * n + [[0, 0, 0]] * n)
    labels = ids.clone()
    labels[:, 0] = IGNORE_INDEX
    return {
        "input_ids": ids,
        "labels": labels,
        "ref_chosen": torch.full((n,), -1.5),
        "ref_rejected": torch.full((n,), -1.0),
        "levels": levels,
    }


def test_ipr_loss_is_dpo_plus_chosen_nll_by_hand():
    model, beta = TwoTokenModel(TABLE), 0.5
    chosen = log_softmax_row(TABLE[0], 1) + log_softmax_row(TABLE[1], 1)
    rejected = 2 * log_softmax_row(TABLE[0], 0)
    dpo = -math.log(1 / (1 + math.exp(-beta * ((chosen + 1.5) - (rejected + 1.0)))))
    nll = -chosen / 2
    loss, _ = batch_loss(model, _batch(["step"]), beta, {"step": LevelSettings(weight=1.0, nll_weight=1.0)})
    assert float(loss) == pytest.approx(dpo + nll, abs=1e-6)
    plain, _ = batch_loss(model, _batch(["step"]), beta, {"step": LevelSettings(weight=1.0)})
    assert float(plain) == pytest.approx(dpo, abs=1e-6)


def test_hierarchical_loss_is_weighted_sum_of_level_means():
    losses = torch.tensor([1.0, 3.0, 2.0, 4.0, 6.0])
    levels = ["traj", "traj", "step", "group", "group"]
    nll = torch.zeros(5)
    settings = {"traj": LevelSettings(0.5), "step": LevelSettings(2.0), "group": LevelSettings(1.0)}
    total = hierarchical_loss(levels, losses, nll, settings)
    assert float(total) == pytest.approx(0.5 * 2.0 + 2.0 * 2.0 + 1.0 * 5.0)


def test_gradient_flows_to_the_policy():
    model = TwoTokenModel(TABLE)
    loss, metrics = batch_loss(
        model, _batch(["traj", "group"]), 0.3, {"traj": LevelSettings(), "group": LevelSettings()}
    )
    loss.backward()
    assert model.table.grad is not None and model.table.grad.abs().sum() > 0
    assert 0.0 <= metrics["reward_accuracy"] <= 1.0
