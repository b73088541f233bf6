"""Prefix reuse in the local policy (hpl.prefix_cache): the same replies as re-encoding every prompt, on
real ALFWorld games, greedy and sampled, free and admissible, in episodes and Monte Carlo rollouts."""

import functools

import numpy as np
import pytest
import torch
from test_models_training import SFT_HP
from test_models_training import SPEC as TINY

from hpl.alfworld.env import AlfworldEnv
from hpl.alfworld.expert import collect_expert
from hpl.episodes import play, select_tasks
from hpl.models import build_tiny_model
from hpl.policy import HFPolicy
from hpl.prefix_cache import Entry, PrefixStore, common_prefix, decode, prefill_groups, prompt_lookup
from hpl.rollouts import rollout_states
from hpl.sft import train_sft
from hpl.step_level import expert_state

SPEC = {
    **TINY,
    "vocab_size": 600,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_layers": 2,
    "num_heads": 4,
    "max_positions": 4096,
}
HP = {
    **SFT_HP,
    "epochs": 6,
    "lr": 3e-3,
    "batch_size": 2,
    "warmup_ratio": 0.05,
    "max_length": None,
    "group_by_length": True,
}


def _entry(ids):
    return Entry(np.asarray(ids), [])


def test_common_prefix_and_lookup():
    assert common_prefix(np.asarray([1, 2, 3]), np.asarray([1, 2, 4, 5])) == 2
    assert common_prefix(np.asarray([1, 2]), np.asarray([1, 2, 3])) == 2
    assert common_prefix(np.asarray([]), np.asarray([1])) == 0
    store = PrefixStore(recent=1)
    store.put("a", _entry([1, 2, 3, 4]))
    store.put("b", _entry([1, 2, 9]))
    assert store.lookup("a", [1, 2, 3, 4, 5, 6])[1] == 4  # its own entry
    assert store.lookup("a", [1, 2, 3, 4])[1] == 3  # the last prompt token is always encoded
    entry, n = store.lookup("new", [1, 2, 9, 9])  # no entry of its own: the longest shared prefix
    assert n == 3 and list(entry.ids) == [1, 2, 9]
    assert store.lookup("a", [7, 8])[1] == 0
    store.put("c", _entry([5]))
    store.keep({"c"})  # the live one and the most recent other stay
    assert list(store.entries) == ["b", "c"]


def test_prompt_lookup_drafts_what_followed_the_latest_match():
    # the last 3 tokens (7, 8, 9) occurred at 1 and at 5: the latest wins, up to `size` tokens after it
    assert prompt_lookup([1, 7, 8, 9, 4, 7, 8, 9, 5, 6, 7, 8, 9], 2) == [5, 6]
    assert prompt_lookup([1, 7, 8, 9, 4, 7, 8, 9, 5, 6, 7, 8, 9], 9) == [5, 6, 7, 8, 9]
    # no earlier (8, 9): a shorter n-gram, then none
    assert prompt_lookup([9, 3, 1, 8, 9], 2) == [3, 1]
    assert prompt_lookup([1, 2, 3], 4) == []
    assert prompt_lookup([5], 4) == [] and prompt_lookup([], 4) == []
    assert prompt_lookup([4, 4], 3) == [4]  # the tail itself is never its own match


# re-encoding every prompt; the prefix cache; the prefix cache with prompt-lookup drafts
PATHS = {"re-encoding": {"prefix_cache": False}, "cache": {}, "cache+lookahead": {"lookahead": 3}}


class CountingForwards:
    """Counts the model's forward calls (one per decode step, one per prefill)."""

    def __init__(self, policy: HFPolicy) -> None:
        self.calls, forward = 0, policy.model.forward

        @functools.wraps(forward)  # the same signature (hpl.prefix_cache reads its cache argument's name)
        def counted(*args, **kwargs):
            self.calls += 1
            return forward(*args, **kwargs)

        policy.model.forward = counted


def test_prefill_groups_split_only_rows_far_apart_in_new_tokens():
    # turns that add an observation each: one forward
    assert prefill_groups([900, 950, 1000, 1020], [40, 60, 55, 70]) == [[0, 1, 2, 3]]
    # a new episode's whole prompt beside them: its own forward (one forward would pad all to 600 tokens)
    assert prefill_groups([900, 950, 0, 1020], [40, 60, 600, 70]) == [[0, 1, 3], [2]]
    # two rows only, cheap either way: not worth a second forward and the merge
    assert prefill_groups([10, 0], [2, 30]) == [[0, 1]]
    assert prefill_groups([5], [7]) == [[0]]


@pytest.fixture(scope="module")
def trained(alfworld_data, tmp_path_factory):
    """A tiny model after a few epochs of SFT on real handcoded ALFWorld trajectories (small enough to
    train in seconds; barely trained, so its replies repeat tokens and its top logits are often close)."""
    env = AlfworldEnv(alfworld_data)
    tasks = select_tasks(env.task_ids("seen"), 10, seed=0)  # the fixture prepares seen and unseen
    env.close()
    records, _ = collect_expert(alfworld_data, tasks, "handcoded", progress=False)
    base, out = tmp_path_factory.mktemp("base"), tmp_path_factory.mktemp("sft") / "sft"
    build_tiny_model(records, base, SPEC)
    train_sft(str(base), records, str(out), HP, seed=0)
    return out, records


def _policy(path, **options) -> HFPolicy:
    """The policy in float64. The two paths multiply in different shapes (a cached prefix and one new
    token, or the whole prompt), so their float32 logits differ in the last bits; with this model's close
    top logits that flipped a greedy token in one CI run. In float64 the paths still compute differently
    but agree to ~1e-15, so an equal episode checks the cache's logic, not float32 rounding."""
    policy = HFPolicy(str(path), batch_size=4, **options)
    policy.model.to(torch.float64)
    return policy


def _make_env(alfworld_data):
    return lambda: AlfworldEnv(alfworld_data, max_turns=8)


@pytest.mark.parametrize("actions,temperature", [("admissible", 0.0), ("free", 0.0), ("admissible", 1.0)])
def test_episodes_equal_the_reencoding_path(trained, alfworld_data, actions, temperature):
    path, _ = trained
    env = AlfworldEnv(alfworld_data)
    tasks = select_tasks(env.task_ids("seen"), 4, seed=1)
    env.close()
    runs, forwards = {}, {}
    for name, options in PATHS.items():
        policy = _policy(path, actions=actions, **options)
        counter = CountingForwards(policy)
        episodes = play(_make_env(alfworld_data), policy, tasks, parallel=4, temperature=temperature)
        runs[name], forwards[name] = [e.conversations for e in episodes], counter.calls
        if policy.prefixes is not None:
            assert policy.prefixes.entries  # it did reuse
    assert sum(len(c) for c in runs["cache"]) >= 4 * 2 * 8  # many turns per game
    assert runs["cache"] == runs["re-encoding"]
    assert runs["cache+lookahead"] == runs["re-encoding"]
    assert forwards["cache+lookahead"] < forwards["cache"]  # drafts were confirmed: fewer forwards


def test_rollouts_of_one_state_share_its_prefix_and_equal_the_reencoding_path(trained, alfworld_data):
    path, records = trained
    states = [expert_state(r, 3) for r in records[:2]]
    results = {}
    for name, options in PATHS.items():
        policy = _policy(path, actions="admissible", **options)
        done = rollout_states(
            _make_env(alfworld_data), policy, states, 3, temperature=1.0, max_turns=6, lanes=2
        )
        results[name] = {r.state.key: [(x.reward, x.turns) for x in r.rollouts] for r in done}
    assert results["cache"] == results["re-encoding"] == results["cache+lookahead"]
    assert len({str(turns) for rollouts in results["cache"].values() for _, turns in rollouts}) > 2  # sampled


def test_ragged_prefill_gives_the_replies_of_one_padded_forward(trained):
    """Rows far apart in new tokens (continuing conversations beside new long prompts) are encoded in
    separate forwards and merged into one cache; the replies and stored prefixes are those of the single
    padded forward (float64, greedy), on the expert conversations' real token ids."""
    path, records = trained
    policy = _policy(path)
    texts = ["\n".join(turn["value"] for turn in record["conversations"]) for record in records[:6]]
    ids = [policy.tokenizer(text)["input_ids"] for text in texts]
    model, pad, stops = policy.model, policy.tokenizer.pad_token_id, policy.stop_ids

    def run(rows, ragged):
        return decode(
            model,
            rows,
            max_new_tokens=12,
            pad_id=pad,
            stop_ids=stops,
            processors=[[] for _ in rows],
            ragged=ragged,
        )

    _, entries = run([(None, 0, prompt[:300]) for prompt in ids[:4]], ragged=False)
    rows = [(entry, len(entry.ids), prompt[: len(entry.ids) + 5]) for entry, prompt in zip(entries, ids)]
    rows += [(None, 0, ids[4][:700]), (entries[0], 100, ids[5][:400])]  # new, and a short shared prefix
    assert len(prefill_groups([n for _, n, _ in rows], [len(p) - n for _, n, p in rows])) > 1
    padded, padded_entries = run(rows, ragged=False)
    split, split_entries = run(rows, ragged=True)
    assert split == padded
    assert any(len(reply) > 3 for reply in split)
    for a, b in zip(split_entries, padded_entries):
        assert a.ids.tolist() == b.ids.tolist()
        for (ka, va), (kb, vb) in zip(a.kv, b.kv):
            torch.testing.assert_close(ka, kb)
            torch.testing.assert_close(va, vb)
