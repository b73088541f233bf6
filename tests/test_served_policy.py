"""A checkpoint served behind an OpenAI-compatible completions API (hpl.served_policy, generation.server):
`transformers serve` stands in for vLLM here (the same API), serving the real pretrained SmolLM2-135M on
real ALFWorld games; the embedded tiny model is refused by name (its tokenizer would not survive)."""

import subprocess

import pytest
from test_prefix_cache import trained  # noqa: F401  (the fixture: a tiny SFT model on real games)

from hpl.alfworld.env import AlfworldEnv
from hpl.context import ContextRule, read_rule, write_rule
from hpl.endpoint import first_action_only
from hpl.episodes import play, select_tasks, start_episode
from hpl.llm_server import prepare_smollm2
from hpl.models import load_tokenizer
from hpl.policy import HFPolicy, fit_context, job_policy
from hpl.served_policy import ServedModelError, served_policy
from hpl.trajectory import agent_turns

SERVED = {"parallel_episodes": 3, "actions": "free", "server": "transformers"}


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    """SmolLM2-135M-Instruct (the packaged GGUF, converted once per machine) with a context rule, as a
    checkpoint trained here records one: links to the converted files plus context.json."""
    source = prepare_smollm2()
    folder = tmp_path_factory.mktemp("smollm2") / "policy"
    folder.mkdir()
    for path in source.iterdir():
        (folder / path.name).symlink_to(path)
    write_rule(folder, ContextRule(window=1024, reply=24))
    return folder


def _games(alfworld_data, n):
    env = AlfworldEnv(alfworld_data)
    tasks = select_tasks(env.task_ids("seen"), n, seed=1)
    env.close()
    return tasks


def _server_processes(path) -> list[str]:
    ps = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True).stdout.splitlines()
    return [line for line in ps if " serve " in line and str(path) in line]


def test_served_prompts_are_the_local_policys_tokens(smollm2, alfworld_data):
    tokenizer, rule = load_tokenizer(smollm2), read_rule(smollm2)
    env = AlfworldEnv(alfworld_data, max_turns=3)
    with served_policy(smollm2, SERVED) as policy:
        for task in _games(alfworld_data, 4):
            turns = start_episode(env, task, task).conversations
            turns = turns + [{"from": "gpt", "value": "Thought: x 12.\nAction: go to desk 1"}] + turns[-1:]
            local = fit_context(tokenizer, turns, rule.window)
            # the server tokenizes the text it is sent: it must get back the very same ids
            assert tokenizer(policy.prompt_text(turns), add_special_tokens=False)["input_ids"] == local
    env.close()


def test_served_greedy_episodes_take_the_local_policys_actions(smollm2, alfworld_data, tmp_path):
    tasks = _games(alfworld_data, 2)

    def make_env():
        return AlfworldEnv(alfworld_data, max_turns=2)

    local = HFPolicy(str(smollm2), batch_size=1, actions="free", prefix_cache=False)
    expected = {e.task_id: e.conversations for e in play(make_env, local, tasks, parallel=1)}
    log = tmp_path / "server.log"
    with job_policy(str(smollm2), SERVED, server_log=str(log)) as policy:
        assert _server_processes(smollm2.resolve())  # the server runs for the block
        served = {e.task_id: e.conversations for e in play(make_env, policy, tasks, parallel=2)}
    assert not _server_processes(smollm2.resolve())  # and is stopped after it
    assert log.exists() and set(served) == set(expected)
    turns = 0
    for task, conversation in served.items():
        ours = [first_action_only(t) for t in agent_turns(conversation)]
        assert ours == [first_action_only(t) for t in agent_turns(expected[task])], task
        turns += len(ours)
    assert turns >= 3


def test_sampled_replies_follow_their_key(smollm2, alfworld_data):
    env = AlfworldEnv(alfworld_data, max_turns=3)
    task = _games(alfworld_data, 1)[0]
    prompt = start_episode(env, task, task).conversations
    env.close()
    # transformers serve seeds its global generator per request: one request at a time here (vLLM seeds
    # each request's own sampler, so there replies are reproducible at any concurrency)
    with served_policy(smollm2, {**SERVED, "parallel_episodes": 1}) as policy:
        first = policy.act([prompt, prompt], temperature=1.0, keys=["a/1", "b/1"])
        again = policy.act([prompt], temperature=1.0, keys=["a/1"])
        greedy = policy.act([prompt], temperature=0.0)
    assert first[0] == again[0]
    assert len(set(first + greedy)) > 1  # sampled, not greedy


def test_refusals_name_the_setting(smollm2, trained):  # noqa: F811
    tiny, _ = trained
    with pytest.raises(ServedModelError, match="splits text differently under AutoTokenizer"):
        with served_policy(tiny, SERVED):
            pass
    with pytest.raises(ValueError, match="generation.actions: free"):
        with served_policy(smollm2, {**SERVED, "actions": "admissible"}):
            pass
    with pytest.raises(
        ServedModelError, match="serves checkpoint folders; HuggingFaceTB/SmolLM2-135M is none"
    ):
        with served_policy("HuggingFaceTB/SmolLM2-135M", SERVED):
            pass
    with pytest.raises(ValueError, match="generation.server must be one of"):
        with served_policy(smollm2, {**SERVED, "server": "tgi"}):
            pass
