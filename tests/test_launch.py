"""hpl.launch: one process in the job, or one per GPU through `accelerate launch`, checked for real on CPUs
(two processes, gloo backend) since this machine has no GPU."""

import json

import pytest
from test_models_training import SPEC, _records

from hpl.launch import LaunchError, accelerate_command, processes_for, train
from hpl.models import build_tiny_model, load_model

HP = dict(
    epochs=1,
    lr=1e-3,
    batch_size=2,
    grad_accum=1,
    warmup_ratio=0.0,
    scheduler="constant",
    max_length=None,  # the model's context (hpl.context); DPO takes pi_ref's window
    save_steps=1000,
    beta=0.3,
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny")
    build_tiny_model(_records(), path, SPEC)
    return path


@pytest.mark.parametrize(
    ("asked", "visible", "processes"), [(1, 0, 1), (4, 0, 1), (1, 1, 1), (4, 4, 4), (2, 8, 2)]
)
def test_one_process_per_gpu_asked_for_and_one_without_gpus(asked, visible, processes):
    assert processes_for(asked, visible) == processes


def test_more_gpus_asked_than_visible_is_named():
    with pytest.raises(LaunchError, match="asked for 4 GPUs but sees 2"):
        processes_for(4, 2)


def test_accelerate_command_lines():
    gpu = accelerate_command("hpl.sft:train_sft", "args.json", 4)
    assert gpu[gpu.index("--num_processes") + 1] == "4" and "--multi_gpu" in gpu
    assert gpu[-4:] == ["-m", "hpl.launch", "hpl.sft:train_sft", "args.json"]
    assert "--multi_gpu" not in accelerate_command("hpl.dpo:train_dpo", "args.json", 1)
    for wrong in ("sft", "os:system", "hpl.sft"):  # a bare name, outside the library, no function
        with pytest.raises(LaunchError, match=f"training task '{wrong}' is not an hpl function"):
            accelerate_command(wrong, "args.json", 2)


def test_two_process_sft_trains_and_saves_one_model(tiny, tmp_path):
    records = _records(16)
    out = tmp_path / "sft2"
    args = dict(model_path=str(tiny), records=records, out_dir=str(out), hp=HP, seed=0)
    metrics = train("hpl.sft:train_sft", args, processes=2)
    # 16 examples, 2 per process, 2 processes: 4 optimizer steps for the epoch (1 process would take 8)
    assert metrics["steps"] == 4 and metrics["examples"] == 16
    assert json.loads((out / "train_metrics.json").read_text())["steps"] == 4
    assert not (out / "launch_args.json").exists()
    trained, _ = load_model(out)
    base, _ = load_model(tiny)
    changed = [
        name
        for (name, a), (_, b) in zip(trained.named_parameters(), base.named_parameters())
        if not a.equal(b)
    ]
    assert changed  # the saved weights are the trained ones


def test_two_process_hierarchical_dpo_skips_and_trains_phases(tiny, tmp_path):
    turns = _records(1)[0]["conversations"]
    rejected = [{"from": "gpt", "value": "Thought: x.\nAction: look"}]
    pair = {"id": "0", "prompt": turns[:3], "chosen": turns[3:4], "rejected": rejected}
    hard = dict(pair, group_length=7, difficulty=0.1)  # bucket L3/D3: enters in phase 3 only
    args = dict(
        ref_path=str(tiny),
        traj=[pair] * 4,
        step=[pair] * 4,
        group=[hard] * 4,
        out_dir=str(tmp_path / "hpl2"),
        hp=HP,
        settings={"traj": {"weight": 1.0}, "step": {"weight": 1.0}, "group": {"weight": 1.0}},
        variant="full",
        thresholds={"length": [3, 6], "difficulty": [0.7, 0.4]},
        seed=0,
    )
    summary = train("hpl.dpo:train_hierarchical", args, processes=2)
    # phases 1 and 2 have no group pairs: skipped (main process copies the previous model, all wait)
    assert summary["phase1"] == {"skipped": True, "phase": 1} and summary["phase2"]["skipped"]
    # phase 3: 12 pairs, 2 per process and step, 2 processes -> 3 steps
    assert summary["phase3"]["steps"] == 3 and summary["phase3"]["pairs"] == {
        "traj": 4,
        "step": 4,
        "group": 4,
    }
    for phase in (1, 2, 3):
        load_model(tmp_path / "hpl2" / f"phase{phase}")  # each phase holds a loadable checkpoint
