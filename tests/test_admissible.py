"""Admissible-action decoding (`generation.actions: admissible`) on real expert data and real engines.

The constraint must (1) let through, token by token, every action the expert data trains on, as the
pipeline's own tokenizer encodes it, and (2) make a model's action one of the state's admissible actions,
greedy and sampled, while sampling still spreads over several of them.
"""

from __future__ import annotations

import re

import pytest
import torch

from hpl import react
from hpl.admissible import AdmissibleActions, FreeArgument, action_trie, lexicon_admits
from hpl.chat import generation_prompt
from hpl.envs import make_env
from hpl.models import build_tiny_model, conversation_texts, stop_token_ids, train_tokenizer
from hpl.policy import KeyedSampler
from hpl.webshop.expert import run_oracle

SPEC = dict(
    vocab_size=2048, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, max_positions=8192
)


@pytest.fixture(scope="module")
def webshop(webshop_mirror):
    return make_env("webshop", data_dir=webshop_mirror)


@pytest.fixture(scope="module")
def webshop_expert(webshop):
    return [run_oracle(webshop, task_id) for task_id in webshop.task_ids("train")[:40]]


@pytest.fixture(scope="module")
def webshop_tokenizer(webshop_expert):
    return train_tokenizer(conversation_texts(webshop_expert), SPEC["vocab_size"])


def _replayed_turns(env, record):
    """(admissible actions before the reply, the expert's reply) for every agent turn of `record`."""
    env.reset(record["task_id"] if "task_id" in record else record["id"])
    for turn in record["conversations"][3::2]:
        admissible = env.admissible_actions()
        yield admissible, turn["value"]
        env.step(react.parse_action(turn["value"]))


def _allowed_all_the_way(tokenizer, reply: str, admissible: list[str]) -> bool:
    """Run the processor over the reply's own tokens: every token after "Action:" and the turn's end must
    survive the mask (the path a constrained decode may take is the one the model was trained on)."""
    ids = tokenizer.encode(reply, add_special_tokens=False) + stop_token_ids(tokenizer)[:1]
    processor = AdmissibleActions(tokenizer, [admissible], prompt_width=0, stop_ids=stop_token_ids(tokenizer))
    for k in range(1, len(ids)):
        scores = processor(torch.tensor([ids[:k]]), torch.zeros(1, len(tokenizer)))
        if not torch.isfinite(scores[0, ids[k]]):
            return False
    return processor.starts[0] is not None  # the constraint did engage on the action


def test_every_webshop_expert_action_passes_the_constraint(webshop, webshop_expert, webshop_tokenizer):
    turns = [t for record in webshop_expert for t in _replayed_turns(webshop, record)]
    assert len(turns) >= 150  # searches, clicks on products, options and Buy Now
    assert sum(react.parse_action(reply).startswith("click[") for _, reply in turns) >= 100
    failed = [
        reply for admissible, reply in turns if not _allowed_all_the_way(webshop_tokenizer, reply, admissible)
    ]
    assert failed == []


@pytest.mark.parametrize("game", [0, 1])
def test_every_alfworld_expert_action_passes_the_constraint(alfworld_data, game):
    pytest.importorskip("alfworld")
    from hpl.alfworld.expert import play_walkthrough, to_trajectory

    env = make_env("alfworld", data_dir=alfworld_data)
    task_id = env.task_ids("seen")[game * 37]
    record = to_trajectory(env, play_walkthrough(env, task_id), "walkthrough")
    tokenizer = train_tokenizer(conversation_texts([record]), 512)
    turns = list(_replayed_turns(env, {**record, "task_id": task_id}))
    env.close()
    assert len(turns) >= 3 and all(admissible for admissible, _ in turns)
    assert all(_allowed_all_the_way(tokenizer, reply, admissible) for admissible, reply in turns)


def test_a_wrong_action_is_stopped(webshop, webshop_tokenizer):
    webshop.reset(webshop.task_ids("test")[0])
    webshop.step(f"search[{webshop.goal.instruction_text}]")
    admissible = webshop.admissible_actions()
    assert not _allowed_all_the_way(webshop_tokenizer, "Thought: t\nAction: click[b00000000x]", admissible)
    assert not _allowed_all_the_way(webshop_tokenizer, "Thought: t\nAction: search[shoes]", admissible)
    assert _allowed_all_the_way(webshop_tokenizer, f"Thought: t\nAction: {admissible[-1]}", admissible)


@pytest.fixture(scope="module")
def results_page(webshop):
    """A WebShop results page: its conversation and its admissible clicks."""
    observation, _ = webshop.reset(webshop.task_ids("test")[3])
    conversation = [
        {"from": "human", "value": webshop.instruction()},
        {"from": "gpt", "value": "OK"},
        {"from": "human", "value": observation},
    ]
    reply = f"Thought: search.\nAction: search[{webshop.goal.instruction_text}]"
    result = webshop.step(react.parse_action(reply))
    conversation += [{"from": "gpt", "value": reply}, {"from": "human", "value": result.observation}]
    return conversation, webshop.admissible_actions()


def _constrained_continuations(model, tokenizer, conversation, admissible, keys, temperature):
    """Generate from "Thought: ...\nAction:" under the constraint; return the action texts."""
    prompt = generation_prompt(tokenizer, conversation)
    started = tokenizer.encode("Thought: I pick one.\nAction:", add_special_tokens=False)
    width = len(prompt)
    input_ids = torch.tensor([prompt + started] * len(keys))
    processors = [AdmissibleActions(tokenizer, [admissible] * len(keys), width, stop_token_ids(tokenizer))]
    if temperature > 0:
        processors.append(KeyedSampler(keys, temperature, seed=0, prompt_width=width))
    with torch.no_grad():
        out = model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=48,
            do_sample=False,
            eos_token_id=stop_token_ids(tokenizer),
            pad_token_id=tokenizer.pad_token_id,
            logits_processor=processors,
        )
    texts = tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
    return [react.parse_action(text) for text in texts]


def test_an_untrained_model_only_produces_admissible_actions(tmp_path, webshop_expert, results_page):
    model, tokenizer = build_tiny_model(webshop_expert, tmp_path, SPEC)
    conversation, admissible = results_page
    assert len(admissible) >= 5 and all(a.startswith("click[") for a in admissible)
    greedy = _constrained_continuations(model, tokenizer, conversation, admissible, ["g"], 0.0)
    assert greedy[0] in admissible
    keys = [f"run{i}/1" for i in range(24)]
    sampled = _constrained_continuations(model, tokenizer, conversation, admissible, keys, 1.0)
    assert all(action in admissible for action in sampled)
    assert len(set(sampled)) >= 3  # a distribution over valid actions, not one forced choice
    assert sampled == _constrained_continuations(model, tokenizer, conversation, admissible, keys, 1.0)


def test_free_prefix_leaves_the_search_text_free(webshop_tokenizer):
    trie = action_trie(webshop_tokenizer, ["search[...]"])
    ids = webshop_tokenizer.encode("Action: search[red shoes under 30 dollars]", add_special_tokens=False)
    head = len(webshop_tokenizer.encode("Action:", add_special_tokens=False))
    node, used = trie.walk(ids[head:])
    assert node is not None and node.free is not None
    assert webshop_tokenizer.decode(ids[head + used :]) == "red shoes under 30 dollars]"
    assert trie.walk(webshop_tokenizer.encode(" click[x]", add_special_tokens=False))[0] is None


def test_a_free_search_cannot_open_a_bracket(webshop_tokenizer):
    """A "[" inside `search[...]` unbalances the brackets, which WebShop refuses: no token holding one is
    allowed in the free text (the tiny model wrote "search[... b black [SEP]" in 4% of its searches)."""
    processor = AdmissibleActions(webshop_tokenizer, [["search[...]"]], 0, stop_token_ids(webshop_tokenizer))
    ids = webshop_tokenizer.encode("Thought: t\nAction: search[red shoes", add_special_tokens=False)
    for k in range(1, len(ids) + 1):  # the processor follows a reply token by token
        scores = processor(torch.tensor([ids[:k]]), torch.zeros(1, len(webshop_tokenizer)))[0]
    texts = [webshop_tokenizer.decode([i]) for i in range(len(webshop_tokenizer))]
    bracketed = [i for i, text in enumerate(texts) if "[" in text]
    assert bracketed and all(scores[i] == float("-inf") for i in bracketed)
    assert torch.isfinite(scores[webshop_tokenizer.encode(" under", add_special_tokens=False)[0]])
    assert not _allowed_all_the_way(
        webshop_tokenizer, "Thought: t\nAction: search[red [SEP]", ["search[...]"]
    )


def test_an_untrained_policy_plays_webshop_without_an_invalid_action(
    tmp_path, webshop_mirror, webshop, webshop_expert
):
    """Through the episode runner: every reply of a random model, searches included, is a valid action."""
    from hpl.episodes import play
    from hpl.policy import HFPolicy

    build_tiny_model(webshop_expert, tmp_path, SPEC)
    policy = HFPolicy(str(tmp_path), max_new_tokens=64, batch_size=4, actions="admissible")
    make = lambda: make_env("webshop", data_dir=webshop_mirror, max_turns=4)  # noqa: E731
    episodes = play(make, policy, webshop.task_ids("test")[:4], parallel=4, temperature=1.0)
    assert sum(e.turns for e in episodes) >= 8
    assert all(e.invalid_actions == 0 for e in episodes), [e.actions for e in episodes]
    assert all(a.startswith(("search[", "click[")) for e in episodes for a in e.actions)


# --- InterCode-SQL: a query's bare words, not an action list (hpl.intercode.lexicon) -------------
@pytest.fixture(scope="module")
def intercode(intercode_mirror, sql_server):
    env = make_env("intercode_sql", data_dir=intercode_mirror, server=sql_server)
    yield env
    env.close()


@pytest.fixture(scope="module")
def intercode_turns(intercode):
    """(admissible actions, expert reply, observation) of every agent turn of the real expert data
    (InterCode's logged GPT-4 runs that succeed, and gold queries elsewhere), in the order played."""
    from hpl.intercode.expert import expert_trajectories

    records, _ = expert_trajectories(intercode, replays=1)
    turns = []
    for record in records:
        intercode.reset(record["id"])
        for turn in record["conversations"][3::2]:
            admissible = intercode.admissible_actions()
            result = intercode.step(react.parse_action(turn["value"]))
            turns.append((admissible, turn["value"], result.observation))
    return records, turns


def _query_admitted(admissible, reply: str) -> bool:
    free = next(entry for entry in admissible if not isinstance(entry, str))
    return lexicon_admits(free.lexicon, react.parse_action(reply)[len(free.prefix) :])


def test_intercode_sql_expert_queries_pass_the_lexicon(intercode_turns):
    """Every expert query that ran is admitted but a few (aliases used before they are declared, longer
    than a qualifier may be); every query that named a table its database lacks is refused."""
    _, turns = intercode_turns
    queries = [(a, reply, obs) for a, reply, obs in turns if react.parse_action(reply).startswith("```sql")]
    ran = [(a, reply) for a, reply, obs in queries if not obs.startswith("Error")]
    no_table = [(a, reply) for a, reply, obs in queries if re.search(r"Table '[^']+' doesn't exist", obs)]
    assert len(ran) >= 1500 and len(no_table) >= 100
    refused = [reply for a, reply in ran if not _query_admitted(a, reply)]
    assert len(refused) <= 0.02 * len(ran), refused  # measured: 22 of 1,947
    assert not [reply for a, reply in no_table if _query_admitted(a, reply)]


def test_intercode_sql_expert_replies_pass_token_by_token(intercode_turns):
    """The tokenizer's path for the expert's replies (the fence, the query, the close) survives the mask."""
    records, turns = intercode_turns
    tokenizer = train_tokenizer(conversation_texts(records), SPEC["vocab_size"])
    admitted = [
        (a, reply)
        for a, reply, _ in turns
        if react.parse_action(reply) == "submit" or _query_admitted(a, reply)
    ]
    sample = admitted[:: max(1, len(admitted) // 150)]
    assert any(react.parse_action(reply) == "submit" for _, reply in sample)
    assert [reply for a, reply in sample if not _allowed_all_the_way(tokenizer, reply, a)] == []


def test_an_untrained_policy_names_only_its_databases_tables(
    tmp_path, intercode_mirror, sql_server, intercode_turns
):
    """Through the episode runner, sampling: every query of a random model uses the task database's words."""
    from hpl.episodes import play
    from hpl.policy import HFPolicy

    records, _ = intercode_turns
    build_tiny_model(records[:60], tmp_path, SPEC)
    policy = HFPolicy(str(tmp_path), max_new_tokens=96, batch_size=4, actions="admissible")
    make = lambda: make_env("intercode_sql", data_dir=intercode_mirror, server=sql_server, max_turns=3)  # noqa: E731
    probe = make()
    tasks = probe.task_ids("test")[:8]
    lexicons = {task: probe.lexicon(probe.task(task).db) for task in tasks}
    probe.close()
    episodes = play(make, policy, tasks, parallel=8, temperature=1.0)
    queries = [(e.task_id, a) for e in episodes for a in e.actions if a != "submit"]
    assert len(queries) >= 8 and all(a.startswith("```sql") for _, a in queries)
    for task, action in queries:
        # the reply budget may close the fence mid-word: the words before the last one must be admissible
        whole_words = re.sub(r"[A-Za-z0-9_]*`*\s*$", "", action[len("```sql") :])
        lexicon = lexicons[task]
        assert lexicon.extend(lexicon.start(), whole_words) is not None, action
    # a query the budget cut may end inside a table's name (a random model rarely completes a query of the
    # grammar); a query that closed on its own names tables of its database only
    no_table = [
        (e.task_id, action)
        for e in episodes
        for action, turn in zip(e.actions, e.conversations[4::2])
        if re.search(r"Table '[^']+' doesn't exist", turn["value"])
    ]
    assert not [a for task, a in no_table if lexicon_admits(lexicons[task], a[len("```sql") :])]


@pytest.fixture(scope="module")
def webshop_instruction_words(webshop_mirror):
    return make_env("webshop", data_dir=webshop_mirror, search_words="instruction")


def test_expert_searches_pass_the_instruction_word_constraint(
    webshop_instruction_words, webshop_expert, webshop_tokenizer
):
    """The oracle's query is the lowercased instruction: under `search_words: instruction` the path the
    model was trained on stays allowed, token by token, for every expert turn (searches and clicks)."""
    env = webshop_instruction_words
    turns = [t for record in webshop_expert for t in _replayed_turns(env, record)]
    searches = [(a, reply) for a, reply in turns if react.parse_action(reply).startswith("search[")]
    assert len(searches) == len(webshop_expert)
    assert all(isinstance(a[0], FreeArgument) and a[0].lexicon is not None for a, _ in searches)
    failed = [
        reply for admissible, reply in turns if not _allowed_all_the_way(webshop_tokenizer, reply, admissible)
    ]
    assert failed == []


def test_a_search_outside_the_instruction_is_stopped(webshop_instruction_words, webshop_tokenizer):
    env = webshop_instruction_words
    env.reset(env.task_ids("test")[0])
    admissible = env.admissible_actions()
    words = re.findall(r"[a-z0-9]+", env.goal.instruction_text.lower())
    once = next(w for w in words[1:] if words.count(w) == 1 and w.isalpha() and w != words[0])
    assert _allowed_all_the_way(
        webshop_tokenizer, f"Thought: t\nAction: search[{words[0]} {once}]", admissible
    )
    assert not _allowed_all_the_way(webshop_tokenizer, "Thought: t\nAction: search[zzyzx]", admissible)
    # a word no more often than the instruction says it
    assert not _allowed_all_the_way(
        webshop_tokenizer, f"Thought: t\nAction: search[{once} {once}]", admissible
    )
