"""The tiny model, the agent-token loss mask, SFT and batched generation, on real transformers."""

import json
import math
from pathlib import Path

import pytest

from hpl import trainer
from hpl.chat import IGNORE_INDEX, encode_turns, generation_prompt
from hpl.dpo import encode_side
from hpl.models import ModelLoadError, build_tiny_model, load_model
from hpl.policy import HFPolicy, fit_context
from hpl.react import parse_action
from hpl.sft import train_sft

SPEC = dict(
    vocab_size=400, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, max_positions=512
)
SFT_HP = dict(
    batch_size=8,
    lr=5e-3,
    epochs=1,
    max_length=256,
    warmup_ratio=0.1,
    grad_accum=1,
    scheduler="cosine",
    save_steps=1000,
)


def _records(n=24):
    records = []
    for i in range(n):
        k = i % 3
        records.append(
            {
                "id": str(i),
                "reward": 1.0,
                "conversations": [
                    {"from": "human", "value": "Interact with a household."},
                    {"from": "gpt", "value": "OK"},
                    {"from": "human", "value": f"Your task is to: go to desk {k}."},
                    {"from": "gpt", "value": f"Thought: the desk {k}.\nAction: go to desk {k}"},
                    {"from": "human", "value": "Observation: On the desk, you see a pen."},
                    {"from": "gpt", "value": "Thought: done.\nAction: look"},
                ],
            }
        )
    return records


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny")
    build_tiny_model(_records(), path, SPEC)
    return path


def test_loss_mask_covers_exactly_the_agent_turns(tiny):
    _, tok = load_model(tiny)
    turns = _records()[0]["conversations"]
    enc = encode_turns(tok, turns)
    learned = tok.decode([i for i, lab in zip(enc.input_ids, enc.labels) if lab != IGNORE_INDEX])
    assert (
        learned
        == "OK<|im_end|>Thought: the desk 0.\nAction: go to desk 0<|im_end|>Thought: done.\nAction: look<|im_end|>"
    )
    assert "Observation" not in learned and "household" not in learned


def test_continuation_masks_prompt_and_inner_observations(tiny):
    _, tok = load_model(tiny)
    turns = _records()[0]["conversations"]
    [enc] = encode_side(tok, turns[:3], turns[3:], window=10_000, what="pair")
    learned = tok.decode([i for i, lab in zip(enc.input_ids, enc.labels) if lab != IGNORE_INDEX])
    assert learned.startswith("Thought: the desk 0.") and "Observation" not in learned
    assert "OK" not in learned  # the prompt's turns never carry loss


def test_dpo_side_spanning_windows_sums_its_windows(tiny):
    """A continuation longer than the window is scored window by window (each reply in its generation
    context); the side's log-prob is the sum of its windows' log-probs."""
    import torch

    from hpl.dpo import PreferenceExample, collate, sequence_logps, side_logps

    model, tok = load_model(tiny)
    turns = _records()[0]["conversations"]
    whole = encode_side(tok, turns[:3], turns[3:], window=10_000, what="pair")
    window = len(generation_prompt(tok, turns[:5])) - 1  # the second reply's prompt must be shortened
    windows = encode_side(tok, turns[:3], turns[3:], window=window, what="pair")
    assert len(whole) == 1 and len(windows) == 2
    batch = collate([PreferenceExample("traj", windows, whole)], tok.pad_token_id)
    with torch.no_grad():
        sides, counts = side_logps(model, batch)
        each = [sequence_logps(model, *(torch.tensor([x]) for x in (w.input_ids, w.labels))) for w in windows]
    assert float(sides[0]) == pytest.approx(sum(float(lp) for lp, _ in each), abs=1e-4)
    assert int(counts[0]) == int(counts[1])  # the same agent tokens, split or not


def test_right_padded_batches_score_each_sequence_as_alone_without_a_mask(tiny):
    """Training batches carry no attention mask (hpl.trainer.right_padded): a real token never sees the pads
    after it, so every sequence's label log-prob and the batch loss equal those computed with the mask."""
    import torch

    from hpl.dpo import sequence_logps
    from hpl.sft import PadCollator, sft_examples

    model, tok = load_model(tiny)
    records = _records(3)
    records[1]["conversations"] = records[1]["conversations"][:4]  # a shorter sequence: padded
    examples = sft_examples(tok, records, window=10_000)
    assert len({len(e["input_ids"]) for e in examples}) == 2
    batch = PadCollator(tok.pad_token_id)(examples)
    assert set(batch) == {"input_ids", "labels"}
    mask = torch.tensor(
        [
            [1] * len(e["input_ids"]) + [0] * (batch["input_ids"].shape[1] - len(e["input_ids"]))
            for e in examples
        ]
    )
    assert int((mask == 0).sum()) > 0
    with torch.no_grad():
        batched, _ = sequence_logps(model, batch["input_ids"], batch["labels"])
        alone = [
            sequence_logps(model, torch.tensor([e["input_ids"]]), torch.tensor([e["labels"]]))[0]
            for e in examples
        ]
        unmasked = model(input_ids=batch["input_ids"], labels=batch["labels"]).loss
        masked = model(input_ids=batch["input_ids"], attention_mask=mask, labels=batch["labels"]).loss
    assert [float(x) for x in batched] == pytest.approx([float(x[0]) for x in alone], abs=1e-4)
    assert float(unmasked) == pytest.approx(float(masked), abs=1e-5)


def test_fit_context_keeps_task_and_drops_oldest_steps(tiny):
    _, tok = load_model(tiny)
    turns = _records()[0]["conversations"][:5]
    full = generation_prompt(tok, turns)
    cut = fit_context(tok, turns, len(full) - 1)
    assert len(cut) < len(full)
    assert tok.decode(cut).count("Your task is to: go to desk 0.") == 1  # opening turns kept


@pytest.fixture(scope="module")
def sft(tiny, tmp_path_factory):
    """The tiny model after SFT on the records (it learns "Thought: ...\nAction: go to desk k")."""
    hp = {**SFT_HP, "epochs": 30, "logging_steps": 100}
    out = tmp_path_factory.mktemp("sft") / "sft"
    return out, train_sft(str(tiny), _records(), str(out), hp, seed=0)


def test_sft_learns_and_policy_generates(sft):
    path, metrics = sft
    assert metrics["examples"] == 24 and metrics["train_loss"] < math.log(SPEC["vocab_size"])  # below chance
    assert (path / "train_metrics.json").exists()
    fit = json.loads((path / "context.json").read_text())
    assert fit["data_fit"]["replies_cut"] == 0 and fit["data_fit"]["trajectories_shortened"] == 0
    assert fit["max_new_tokens"] == fit["data_fit"]["longest_reply"]  # no margin asked for here
    policy = HFPolicy(str(path), max_new_tokens=2, batch_size=2)
    assert policy.max_new_tokens == fit["max_new_tokens"]  # the model's recorded budget wins
    prompts = [r["conversations"][:3] for r in _records(3)]
    greedy = policy.act(prompts, temperature=0.0)
    assert greedy == policy.act(prompts, temperature=0.0)  # greedy is deterministic
    assert len(greedy) == 3 and all(isinstance(r, str) for r in greedy)
    assert sum(r.startswith("Thought:") for r in greedy) >= 2  # it learned the ReAct format


def test_admissible_policy_acts_only_within_the_admissible_list(sft):
    """The trained model says "go to desk k" for the task's k; offered only desks it never saw in that
    place, the constrained policy still acts validly (greedy and sampled), and the free one does not."""
    path, _ = sft
    prompts = [r["conversations"][:3] for r in _records(3)]
    admissible = [["go to desk 7", "go to desk 8", "look"]] * 3
    free = HFPolicy(str(path), max_new_tokens=24, batch_size=3)
    constrained = HFPolicy(str(path), max_new_tokens=24, batch_size=3, actions="admissible")
    free_actions = [parse_action(r) for r in free.act(prompts, admissible=admissible)]
    assert all(a not in admissible[0] for a in free_actions)  # free: ignores the list
    keys = [f"task{i}/0" for i in range(3)]
    for temperature in (0.0, 1.0):
        replies = constrained.act(prompts, temperature=temperature, keys=keys, admissible=admissible)
        assert all(parse_action(r) in admissible[0] for r in replies), replies
    with pytest.raises(ValueError, match="generation.actions"):
        HFPolicy(str(path), actions="menu")


def test_bad_checkpoint_error_names_path(tmp_path):
    with pytest.raises(ModelLoadError, match=str(tmp_path / "nope")):
        load_model(tmp_path / "nope")


class _Killed(RuntimeError):
    pass


@pytest.mark.parametrize("grouped", [False, True])
def test_sft_killed_midway_resumes_from_its_checkpoint_to_the_same_weights(
    tiny, tmp_path, monkeypatch, grouped
):
    import hpl.sft as sft

    hp = {**SFT_HP, "epochs": 4, "lr": 1e-3, "batch_size": 4, "save_steps": 5, "group_by_length": grouped}
    records = _records(24)  # 6 steps per epoch, 24 in all
    clean = tmp_path / "clean"
    train_sft(str(tiny), records, str(clean), hp, seed=3)

    def kill_at_step_13():
        from transformers import TrainerCallback

        class Kill(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step == 13:
                    raise _Killed

        return [trainer.save_at_end(), Kill()]

    out = tmp_path / "killed"
    monkeypatch.setattr(trainer, "training_callbacks", kill_at_step_13)
    with pytest.raises(_Killed):
        sft.train_sft(str(tiny), records, str(out), hp, seed=3)
    assert sorted(p.name for p in trainer.scratch_dir(out).glob("checkpoint-*")) == ["checkpoint-10"]
    monkeypatch.undo()
    metrics = sft.train_sft(str(tiny), records, str(out), hp, seed=3)
    assert metrics["steps"] == 24 and not trainer.scratch_dir(out).exists()
    resumed, _ = load_model(out)
    reference, _ = load_model(clean)
    for (name, a), (_, b) in zip(resumed.named_parameters(), reference.named_parameters()):
        assert (a - b).abs().max() < 1e-5, name


def test_rft_without_successes_copies_the_sft_model_whole(sft, tmp_path):
    from hpl.sft import copy_sft_model

    sft, _ = sft
    out = tmp_path / "rft" / "seed0"
    out.parent.mkdir()
    metrics = copy_sft_model(sft, out)
    assert metrics["copied_from"] == str(sft) and not out.with_name("seed0.partial").exists()
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in Path(sft).iterdir())
    assert (out / "model.safetensors").read_bytes() == (Path(sft) / "model.safetensors").read_bytes()
    assert json.loads((out / "train_metrics.json").read_text())["copied_from"] == str(sft)
    model, _ = load_model(out)  # loads as a checkpoint of its own
    assert model.num_parameters() > 0


def test_checkpoints_reload_the_tokenizer_as_trained(tiny, sft):
    """Beside a Qwen2 config, AutoTokenizer would rebuild the tiny tokenizer as a Qwen2 tokenizer, whose own
    pre-tokenizer splits digits apart: " 12" would become two tokens the merges never produced."""
    from hpl.models import conversation_texts, train_tokenizer

    trained = train_tokenizer(conversation_texts(_records()), SPEC["vocab_size"])
    text = "Thought: the desk 12.\nAction: go to desk 12"
    for folder in (tiny, sft[0]):  # the base model and a checkpoint saved by SFT
        _, tok = load_model(folder)
        assert tok.encode(text) == trained.encode(text)


def test_sft_can_group_batches_by_length_and_dpo_refuses_to(tiny, tmp_path):
    from hpl.dpo import train_dpo
    from hpl.sft import length_grouped_sampler

    # batches hold examples of similar length: sorted within shuffled megabatches (16 examples here)
    lengths = [8 + i if i % 2 else 300 + i for i in range(64)]
    sampler = length_grouped_sampler(lengths, 2, seed=0)
    first = list(sampler)
    order = [lengths[i] for i in first]
    pairs = [order[i : i + 2] for i in range(0, 64, 2)]
    mixed = [p for p in pairs if (min(p) < 100) != (max(p) < 100)]
    assert sorted(order) == sorted(lengths) and len(mixed) <= 4, (
        mixed
    )  # at most one per megabatch (random: ~16)
    assert list(sampler) == first  # an epoch's order is fixed by (seed, epoch)
    sampler.set_epoch(1)
    assert list(sampler) != first  # and changes with the epoch
    hp = {**SFT_HP, "batch_size": 2, "group_by_length": True}
    metrics = train_sft(str(tiny), _records(8), str(tmp_path / "sft"), hp, seed=0)
    assert metrics["train_loss"] < math.log(SPEC["vocab_size"])
    with pytest.raises(ValueError, match="training.dpo.group_by_length"):
        train_dpo(str(tmp_path / "sft"), {"traj": []}, str(tmp_path / "dpo"), {**hp, "beta": 0.1}, {})


def test_action_line_stop_fires_at_the_first_complete_action_line(tiny):
    import torch

    from hpl.policy import ActionLineStop, _has_action_line

    _, tokenizer = load_model(str(tiny))
    stop = ActionLineStop(tokenizer, 2)
    for reply in [
        "Thought: the desk 1.\nAction: go to desk 1\nThought: more",
        "Action: look\n",
        "Thought: no action yet\nAction:\nAction: go to desk 2\n",
        "Thought: never ends",
    ]:
        ids = [0, 0] + tokenizer.encode(reply, add_special_tokens=False)  # two prompt tokens
        fired = [bool(stop(torch.tensor([ids[:k]]), None)[0]) for k in range(3, len(ids) + 1)]
        full = [_has_action_line(tokenizer.decode(ids[2:k])) for k in range(3, len(ids) + 1)]
        first = full.index(True) if True in full else None
        assert (fired.index(True) if True in fired else None) == first, reply


def test_warmup_rounds_down_so_a_short_training_keeps_its_steps():
    from hpl.training_args import warmup_steps

    # transformers' ceil(ratio x steps) where that is whole, one step less otherwise
    assert [warmup_steps(n, 0.1) for n in (1, 3, 9, 10, 25, 30, 100)] == [0, 0, 0, 1, 2, 3, 10]
    assert warmup_steps(7, 0.0) == 0


def test_a_one_step_dpo_training_moves_the_policy(sft, tmp_path):
    """With warmup_ratio 0.1 transformers would warm up for ceil(0.1) = 1 step, at learning rate 0: a
    one-step DPO (IPR on 3 step pairs in the embedded default) returned pi_ref unchanged."""
    import torch
    from safetensors.torch import load_file

    from hpl.dpo import train_dpo

    ref, _ = sft
    turns = _records(1)[0]["conversations"]
    rejected = [{"from": "gpt", "value": "Thought: done.\nAction: look"}]
    pairs = [
        {"id": str(i), "prompt": turns[:3], "chosen": turns[3:4], "rejected": rejected} for i in range(2)
    ]
    hp = {**SFT_HP, "batch_size": 2, "lr": 1e-3, "beta": 0.1, "max_length": None}
    out = tmp_path / "dpo"
    metrics = train_dpo(str(ref), {"traj": pairs}, str(out), hp, {"traj": {"weight": 1.0}}, seed=0)
    assert metrics["steps"] == 1
    before, after = load_file(ref / "model.safetensors"), load_file(out / "model.safetensors")
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(moved) == len(before), f"{len(before) - len(moved)} tensors unchanged"
