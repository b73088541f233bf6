"""hpl.sharding (split and gather) and the per-episode sampling streams that make a sharded run repeat the
unsharded one (the pipeline-level check is tests/test_pipeline.py::test_sharded_generation_...)."""

from pathlib import Path

import pytest
from test_models_training import SPEC, _records

from hpl.io import read_jsonl, write_jsonl
from hpl.models import build_tiny_model
from hpl.policy import HFPolicy, key_seed
from hpl.sharding import (
    gather_jsonl,
    in_task_order,
    interleave,
    job_shard,
    kept_shards,
    planned_shards,
    shard,
    shard_paths,
)


@pytest.mark.parametrize("count", [1, 2, 3, 7, 12])
def test_interleave_undoes_shard(count):
    items = list(range(10))
    parts = [shard(items, i, count) for i in range(count)]
    assert sum(len(p) for p in parts) == 10
    assert interleave(parts) == items


def test_shard_index_out_of_range_is_named():
    with pytest.raises(ValueError, match="shard 2 does not exist among 2 shards"):
        shard([1, 2, 3], 2, 2)


def test_rows_go_back_in_task_order_keeping_order_within_a_task():
    order = ["a", "b", "c", "d"]
    part0 = [{"task_id": "a", "n": 1}, {"task_id": "a", "n": 2}, {"task_id": "c", "n": 1}]
    part1 = [{"task_id": "b", "n": 1}, {"task_id": "d", "n": 1}, {"task_id": "d", "n": 2}]
    merged = in_task_order([part0, part1], order)
    assert [(r["task_id"], r["n"]) for r in merged] == [
        ("a", 1),
        ("a", 2),
        ("b", 1),
        ("c", 1),
        ("d", 1),
        ("d", 2),
    ]
    with pytest.raises(ValueError, match="outside the job's task list: z"):
        in_task_order([[{"task_id": "z"}]], order)


def test_gather_jsonl_writes_the_unsharded_file(tmp_path):
    rows = [{"id": str(i), "task_id": str(i)} for i in range(5)]
    paths = []
    for i in range(2):
        paths.append(tmp_path / f"part.shard{i}.jsonl")
        write_jsonl(paths[-1], shard(rows, i, 2))
    assert gather_jsonl(paths, tmp_path / "all.jsonl") == 5
    assert read_jsonl(tmp_path / "all.jsonl") == rows


def test_shard_files_are_named_by_index_and_count(tmp_path):
    out = tmp_path / "seen.jsonl"
    assert shard_paths(out, 1) == []
    assert shard_paths(out, 3) == [str(tmp_path / f"seen.shard{i}of3.jsonl") for i in range(3)]


def test_a_finished_output_keeps_the_shards_it_was_gathered_from(tmp_path):
    out = tmp_path / "seen.jsonl"
    # still to be made: the configured split
    assert planned_shards(out, 2) == shard_paths(out, 2)
    assert planned_shards(out, 1) == []
    # made unsharded: no shards, whatever the count is now
    out.write_text("")
    assert planned_shards(out, 4) == []
    # made from 2 shards: those, whatever the count is now; an incomplete set or another file is ignored
    for path in shard_paths(out, 2) + [
        str(tmp_path / "seen.shard0of3.jsonl"),
        str(tmp_path / "unseen.shard0of2.jsonl"),
    ]:
        Path(path).write_text("")
    assert kept_shards(out) == planned_shards(out, 4) == planned_shards(out, 1) == shard_paths(out, 2)


def test_kept_shards_prefer_the_newest_complete_set(tmp_path):
    import os

    out = tmp_path / "rows.jsonl"
    out.write_text("")
    for n, when in ((2, 1_000), (3, 2_000)):
        for path in shard_paths(out, n):
            Path(path).write_text("")
            os.utime(path, (when, when))
    assert kept_shards(out) == shard_paths(out, 3)


def test_a_shard_job_reads_its_index_and_count_from_its_file_name():
    from snakemake.iocontainers import Wildcards

    assert job_shard(Wildcards(fromdict={"bench": "webshop"})) == (0, 1)
    assert job_shard(Wildcards(fromdict={"bench": "webshop", "shard": "1", "shards": "4"})) == (1, 4)


def test_key_seeds_are_stable_and_distinct():
    assert key_seed(0, "task/3", 5) == key_seed(0, "task/3", 5)
    assert len({key_seed(0, "task/3", p) for p in range(50)}) == 50
    assert key_seed(0, "task/3", 5) != key_seed(1, "task/3", 5)


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny")
    build_tiny_model(_records(), path, SPEC)
    return HFPolicy(str(path), max_new_tokens=12, batch_size=8)


def test_a_sampled_reply_does_not_depend_on_its_batch(policy):
    convs = [r["conversations"][:3] for r in _records(6)]
    keys = [f"run{i}/0" for i in range(6)]
    together = policy.act(convs, temperature=1.0, keys=keys)
    alone = [policy.act([c], temperature=1.0, keys=[k])[0] for c, k in zip(convs, keys)]
    reordered = policy.act(convs[::-1], temperature=1.0, keys=keys[::-1])[::-1]
    assert together == alone == reordered
    # the draw is random, not greedy: across 6 keys of one prompt, replies differ
    same_prompt = policy.act([convs[0]] * 6, temperature=1.0, keys=keys)
    assert len(set(same_prompt)) > 1


def test_keyed_sampling_draws_from_the_softmax_of_the_scores():
    import torch

    from hpl.policy import KeyedSampler

    scores = torch.tensor([[2.0, 1.0, 0.0, -1.0, float("-inf")]])
    expected = torch.softmax(scores[0] / 0.7, dim=-1)
    keys = [f"run{i}/0" for i in range(4000)]
    sampler = KeyedSampler(keys, temperature=0.7, seed=3, prompt_width=0)
    picks = sampler(torch.zeros(len(keys), 0, dtype=torch.long), scores.repeat(len(keys), 1)).argmax(-1)
    counts = torch.bincount(picks, minlength=5).double()
    assert counts[4] == 0  # a masked token is never drawn
    spread = (len(keys) * expected * (1 - expected)).sqrt()
    assert ((counts - len(keys) * expected).abs() <= 4 * spread + 1).all(), (counts, len(keys) * expected)
    # one key's draw is a function of the key and position alone
    again = KeyedSampler(keys[:7], temperature=0.7, seed=3, prompt_width=0)
    assert (again(torch.zeros(7, 0, dtype=torch.long), scores.repeat(7, 1)).argmax(-1) == picks[:7]).all()
