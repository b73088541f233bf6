"""The shared context rule (hpl.context) on real expert data of the three benchmarks, with the tiny
tokenizer as the pipeline builds it (byte-level BPE trained on the expert corpus, loaded from the tiny
model's folder as every job loads it) and the context rules/models.smk gives the tiny model:

- before every expert reply, the training sequence holds exactly the generation prompt's token ids, both
  for whole conversations and under a window small enough to drop steps and cut observations;
- the CI preset and the embedded default cut no expert reply, and the default trains whole conversations;
- budgets that would cut a reply or drop the task are refused with the config key named.
"""

from __future__ import annotations

import pytest
import yaml

from hpl.chat import IGNORE_INDEX, IM_END, IM_START
from hpl.context import (
    OPENING_TURNS,
    ContextError,
    ContextRule,
    data_fit,
    derive_rule,
    generation_rule,
    longest_prompt,
    longest_reply,
    prompt_ids,
    training_sequences,
    write_rule,
)
from hpl.episodes import select_tasks
from hpl.mirror import PROJECT_ROOT
from hpl.models import build_tiny_model

BENCHES = ["alfworld", "webshop", "intercode_sql"]
ALFWORLD_GAMES = 10  # handcoded expert, ~1 s a game; the CI preset's number of training games


def _config(preset: str | None = None) -> dict:
    """config/config.yaml with a preset layered over it key by key (as Snakemake does)."""
    config = yaml.safe_load((PROJECT_ROOT / "config" / "config.yaml").read_text())
    if preset:
        _merge(config, yaml.safe_load((PROJECT_ROOT / "config" / "presets" / preset).read_text()))
    return config


def _merge(base: dict, over: dict) -> None:
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def _alfworld(alfworld_data, n: int) -> list[dict]:
    from hpl.alfworld.expert import collect_expert
    from hpl.envs import make_env

    env = make_env("alfworld", data_dir=alfworld_data)
    ids = select_tasks(env.task_ids("seen"), n, seed=0)
    env.close()
    return collect_expert(alfworld_data, ids, "handcoded", progress=False)[0]


def _webshop(mirror, n: int) -> list[dict]:
    from hpl.envs import make_env
    from hpl.webshop.expert import collect_expert

    env = make_env("webshop", data_dir=mirror)
    return collect_expert(env, select_tasks(env.task_ids("train"), n, seed=0))[0]


def _intercode(mirror, folder, n: int) -> list[dict]:
    from hpl.envs import make_env
    from hpl.intercode.expert import expert_trajectories
    from hpl.intercode.server import PrivateServer

    with PrivateServer(folder, mirror / "ic_spider_dbs.sql") as server:
        env = make_env("intercode_sql", data_dir=mirror, server=server)
        try:
            records = expert_trajectories(env)[0]  # the whole training split; keep the pipeline's size
        finally:
            env.close()
    chosen = set(select_tasks([r["id"] for r in records], n, seed=0))
    return [r for r in records if r["id"] in chosen]


@pytest.fixture(scope="module")
def experts(request, tmp_path_factory) -> dict[str, list[dict]]:
    """Real expert trajectories per benchmark, collected once for the module."""
    cache: dict[str, list[dict]] = {}

    def get(bench: str) -> list[dict]:
        if bench not in cache:
            if bench == "alfworld":
                cache[bench] = _alfworld(request.getfixturevalue("alfworld_data"), ALFWORLD_GAMES)
            elif bench == "webshop":
                cache[bench] = _webshop(request.getfixturevalue("webshop_mirror"), 100)
            else:
                mirror = request.getfixturevalue("intercode_mirror")
                cache[bench] = _intercode(mirror, tmp_path_factory.mktemp("sqlserver"), 100)
            assert cache[bench], f"no {bench} expert trajectory"
        return cache[bench]

    return get


def _tiny(records: list[dict], config: dict, folder):
    """The tiny model's tokenizer (loaded from its folder, as every job loads it) and its context."""
    model, tokenizer = build_tiny_model(
        records, folder, config["model_specs"]["tiny"], generation=config["generation"]
    )
    return tokenizer, model.config.max_position_embeddings


def _rule(records: list[dict], config: dict, folder):
    """The tokenizer and the rule the SFT job derives under `config`."""
    tokenizer, positions = _tiny(records, config, folder)
    hp = config["training"]["sft"]
    return tokenizer, derive_rule(tokenizer, records, config["generation"], positions, hp["max_length"])


def _marker(tokenizer) -> int:
    return len(tokenizer(f"{IM_START}assistant\n", add_special_tokens=False)["input_ids"])


def _reply_ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text + IM_END, add_special_tokens=False)["input_ids"]


def _check_equal_contexts(tokenizer, records: list[dict], window: int) -> tuple[int, int]:
    """Assert, for every expert reply, training context == generation prompt and the whole reply is
    trained; return (replies checked, prompts shortened, training sequences)."""
    checked = shortened = sequences = 0
    for record in records:
        conv = record["conversations"]
        opening = prompt_ids(tokenizer, conv[:OPENING_TURNS], window).ids[: -_marker(tokenizer)]
        seqs = training_sequences(tokenizer, conv, window)
        sequences += len(seqs.sequences)
        trained = {index for index, _, _ in seqs.replies}
        assert trained == {i for i, t in enumerate(conv) if t["from"] == "gpt"}, record["id"]
        for index, number, position in seqs.replies:
            if index < OPENING_TURNS:
                continue
            seq = seqs.sequences[number]
            prompt = prompt_ids(tokenizer, conv[:index], window)
            assert seq.input_ids[:position] == prompt.ids, (record["id"], index)
            assert len(prompt.ids) <= window
            assert prompt.ids[: len(opening)] == opening  # instruction and task never dropped
            reply = _reply_ids(tokenizer, conv[index]["value"])
            assert seq.input_ids[position : position + len(reply)] == reply
            assert seq.labels[position : position + len(reply)] == reply  # trained whole, never cut
            checked += 1
            shortened += prompt.shortened
        # nothing but the agent's replies (and the opening "OK") carries loss
        learned = sum(label != IGNORE_INDEX for s in seqs.sequences for label in s.labels)
        replies = sum(len(_reply_ids(tokenizer, t["value"])) for t in conv if t["from"] == "gpt")
        assert learned == replies, record["id"]
    return checked, shortened, sequences


@pytest.mark.parametrize("bench", BENCHES)
def test_training_context_equals_generation_prompt_on_real_data(bench, experts, tmp_path):
    records = experts(bench)
    tokenizer, rule = _rule(records, _config("ci.yaml"), tmp_path)
    checked, _, _ = _check_equal_contexts(tokenizer, records, rule.window)
    assert checked == sum(len([t for t in r["conversations"][3:] if t["from"] == "gpt"]) for r in records)
    # a window a third of the longest prompt: steps are dropped and long observations cut, and still
    # every training context is the generation prompt
    tight = max(len(prompt_ids(tokenizer, r["conversations"][:OPENING_TURNS], 10**6).ids) for r in records)
    window = max(tight + 40, rule.window // 3)
    checked, shortened, sequences = _check_equal_contexts(tokenizer, records, window)
    assert shortened > 0, f"window {window} shortened no {bench} prompt: the test would prove nothing"
    # a window midway between the longest opening and the longest prompt: ALFWorld's steps are short, so
    # replies after an overflow share sequences (REFILL) instead of taking one window each
    if bench == "alfworld":
        window = (tight + longest_prompt(tokenizer, records)) // 2
        checked, shortened, sequences = _check_equal_contexts(tokenizer, records, window)
        assert 0 < sequences - len(records) < shortened / 2, (window, sequences, shortened)


@pytest.mark.parametrize("bench", BENCHES)
@pytest.mark.parametrize("preset", ["ci.yaml", None])
def test_presets_cut_no_expert_reply(bench, preset, experts, tmp_path):
    """The CI preset (sequences of 1536 tokens, its own small expert sets, whose tokenizer splits text
    into more tokens) and the embedded default (context sized to the data) cut no expert reply; the
    default trains and prompts whole conversations."""
    config = _config(preset)
    records = experts(bench)
    records = [
        r
        for r in records
        if r["id"] in set(select_tasks([r["id"] for r in records], config[bench]["train_tasks"], seed=0))
    ]
    tokenizer, rule = _rule(records, config, tmp_path)
    fit = data_fit(tokenizer, records, rule)
    assert fit["replies"] > 0 and fit["replies_cut"] == 0, fit
    assert fit["max_new_tokens"] >= fit["longest_reply"]
    if preset is None:
        assert fit["trajectories_shortened"] == 0 and fit["prompts_shortened"] == 0, fit
        assert fit["sft_examples"] == len(records)


def test_reply_budget_below_the_longest_reply_is_refused(experts, tmp_path):
    records = experts("webshop")
    tokenizer, _ = _tiny(records, _config(), tmp_path)
    longest, _ = longest_reply(tokenizer, records)
    generation = {"max_new_tokens": longest - 1, "max_prompt_tokens": None}
    with pytest.raises(
        ContextError, match=rf"generation\.max_new_tokens is {longest - 1}.* {longest} tokens"
    ):
        derive_rule(tokenizer, records, generation, 8192)
    assert derive_rule(tokenizer, records, {**generation, "max_new_tokens": longest}, 8192).reply == longest


def test_window_that_cannot_hold_the_task_is_refused(experts, tmp_path):
    records = experts("alfworld")
    tokenizer, _ = _tiny(records, _config(), tmp_path)
    conv = records[0]["conversations"]
    opening = len(prompt_ids(tokenizer, conv[:OPENING_TURNS], 10**6).ids)
    with pytest.raises(ContextError, match="generation.max_prompt_tokens"):
        prompt_ids(tokenizer, conv[:5], opening - 1)
    with pytest.raises(ContextError, match="generation.max_prompt_tokens"):
        training_sequences(tokenizer, conv, opening - 1)
    # a training cap that leaves no room for the longest opening is refused before training, naming it
    generation = {"max_new_tokens": None, "reply_margin": 0}
    reply, _ = longest_reply(tokenizer, records)
    with pytest.raises(ContextError, match=r"Raise training\.sft\.max_length"):
        derive_rule(tokenizer, records, generation, 8192, max_length=reply + opening - 1)


def test_generation_rule_is_the_recorded_one_else_the_configured_budgets(tmp_path):
    (tmp_path / "trained").mkdir()
    write_rule(tmp_path / "trained", ContextRule(window=900, reply=60))
    assert generation_rule(tmp_path / "trained", 10, 20, 4096) == ContextRule(window=900, reply=60)
    # a model with no rule (a hub model): the configured budgets, the window within its positions
    assert generation_rule(tmp_path, 64, None, 2048) == ContextRule(window=1984, reply=64)
    assert generation_rule(tmp_path, 64, 1000, 2048) == ContextRule(window=1000, reply=64)
    with pytest.raises(ContextError, match="set generation.max_new_tokens for it"):
        generation_rule(tmp_path, None, 1000, 2048)
