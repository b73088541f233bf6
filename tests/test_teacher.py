"""The teacher expert source and zero-shot endpoint rows: `hpl.endpoint.EndpointPolicy`, `hpl.teacher`.

Two kinds of endpoint, both real HTTP on 127.0.0.1:
- a small scripted OpenAI-compatible server (http.server in threads) that answers ReAct replies, can fail
  with HTTP 500 on demand, waits a little per request and records every request: retries, concurrency,
  call counting, key hygiene;
- SmolLM2-135M-Instruct behind `transformers serve` (started once for the module): the teacher on a few
  tasks of ALFWorld, WebShop and InterCode-SQL (real engines, a real MariaDB server), the cache on a rerun,
  and a zero-shot evaluation of the same model as a local Hugging Face path. SmolLM2's replies are not
  judged, only what the pipeline makes of them: schema-valid trajectories, a data card, zero calls again.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hpl.endpoint import (
    EndpointPolicy,
    endpoint_policy,
    eval_policy,
    first_action_only,
    model_label,
    public_url,
    result_settings,
    to_messages,
)
from hpl.envs import make_env
from hpl.episodes import play
from hpl.llm import LLMError
from hpl.llm_server import LocalLLMServer, free_port, prepare_smollm2
from hpl.resources import table5_inputs
from hpl.teacher import KEEP_THRESHOLD, collect_teacher
from hpl.trajectory import validate_trajectory

SECRET = "sk-teacher-DO-NOT-LEAK-77c2e9"
REPLY = "Thought: I should search for the item.\nAction: search[red shirt]\nObservation: made up"


# ------------------------------------------------------------------------------ a scripted endpoint


class ScriptedEndpoint:
    """Answers chat completions with `reply` (after `delay` s), or the HTTP statuses in `script` first."""

    def __init__(self, reply: str = REPLY, delay: float = 0.0):
        self.reply, self.delay = reply, delay
        self.script: list[int] = []
        self.requests: list[dict] = []
        self.in_flight = self.max_in_flight = 0
        lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    endpoint.requests.append(
                        {"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
                    )
                    status = endpoint.script.pop(0) if endpoint.script else 200
                    endpoint.in_flight += 1
                    endpoint.max_in_flight = max(endpoint.max_in_flight, endpoint.in_flight)
                time.sleep(endpoint.delay)
                with lock:
                    endpoint.in_flight -= 1
                if status == 200:
                    payload = {
                        "id": "c",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body["model"],
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": endpoint.reply},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
                    }
                else:
                    payload = {"error": {"message": f"scripted {status}", "type": "server_error"}}
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}/v1"


CONVERSATION = [
    {"from": "human", "value": "You are web shopping. ..."},
    {"from": "gpt", "value": "OK"},
    {"from": "human", "value": "WebShop [SEP] Instruction: [SEP] a red shirt [SEP] Search"},
]


# ------------------------------------------------------------------------------------------- units


def test_prompt_is_the_conversation_and_replies_stop_at_the_first_action():
    assert to_messages(CONVERSATION) == [
        {"role": "user", "content": "You are web shopping. ..."},
        {"role": "assistant", "content": "OK"},
        {"role": "user", "content": "WebShop [SEP] Instruction: [SEP] a red shirt [SEP] Search"},
    ]
    assert first_action_only(REPLY) == "Thought: I should search for the item.\nAction: search[red shirt]"
    assert (
        first_action_only("Thought: a\nAction: \nAction: look\nAction: go")
        == "Thought: a\nAction: \nAction: look"
    )
    assert first_action_only("no action here ") == "no action here"
    # what may carry a key in a URL never reaches a data card
    assert public_url("https://u:pw@api.example.com:8443/v1?key=abc#x") == "https://api.example.com:8443/v1"
    assert model_label({"base_url": None}) == "SmolLM2-135M-Instruct (local transformers serve)"
    assert model_label({"base_url": "https://api.openai.com/v1", "model": "gpt-4o"}) == "gpt-4o"
    # transport settings are not part of what a rule reruns on
    assert set(result_settings({"max_concurrency": 3, "model": "m"})) == {
        "base_url",
        "model",
        "temperature",
        "max_tokens",
    }
    assert KEEP_THRESHOLD == {"alfworld": 1.0, "webshop": 0.8, "intercode_sql": 1.0}


def test_concurrent_requests_in_input_order(tmp_path):
    with ScriptedEndpoint(delay=0.4) as endpoint:
        policy = EndpointPolicy(endpoint.base_url, "m", cache_dir=tmp_path, max_concurrency=4)
        conversations = [CONVERSATION[:2] + [{"from": "human", "value": f"task {i}"}] for i in range(8)]
        started = time.monotonic()
        replies = policy.act(conversations)
        elapsed = time.monotonic() - started
        policy.close()
    assert replies == [first_action_only(REPLY)] * 8
    assert endpoint.max_in_flight == 4  # the limit, reached
    assert elapsed < 8 * 0.4  # not one after the other
    tasks = [r["body"]["messages"][-1]["content"] for r in endpoint.requests]
    assert sorted(tasks) == sorted(f"task {i}" for i in range(8))
    assert policy.usage.calls == 8 and policy.usage.prompt_tokens == 800


def test_http_500_twice_then_success_is_retried(tmp_path):
    with ScriptedEndpoint() as endpoint:
        endpoint.script = [500, 500]
        policy = EndpointPolicy(endpoint.base_url, "m", cache_dir=tmp_path, max_retries=3)
        started = time.monotonic()
        assert policy.act([CONVERSATION]) == [first_action_only(REPLY)]
    assert len(endpoint.requests) == 3  # two failures, then the answer
    assert policy.usage.calls == 1
    assert time.monotonic() - started > 0.5  # it backed off between tries


def test_unreachable_endpoint_fails_naming_the_url(tmp_path):
    url = _dead_url()
    policy = EndpointPolicy(url, "m", api_key=SECRET, cache_dir=tmp_path, max_retries=1)
    with pytest.raises(LLMError, match="unreachable") as err:
        policy.act([CONVERSATION, CONVERSATION])
    assert url in str(err.value) and SECRET not in str(err.value)
    with pytest.raises(LLMError, match="needs a model name"):
        with endpoint_policy({"base_url": url, "model": None}):
            pass


@pytest.fixture(scope="module")
def webshop_env_factory(webshop_mirror):
    return lambda: make_env("webshop", data_dir=webshop_mirror, max_turns=3)


def test_teacher_run_never_leaks_the_api_key(tmp_path, monkeypatch, caplog, webshop_env_factory):
    """The key goes to the endpoint (Authorization header) and nowhere else: logs, cache, records, card."""
    caplog.set_level(logging.DEBUG)
    for name in ("openai", "httpx", "httpcore", "hpl"):
        caplog.set_level(logging.DEBUG, logger=name)
    monkeypatch.setenv("HPL_TEST_TEACHER_KEY", SECRET)
    with ScriptedEndpoint() as endpoint:
        endpoint.script = [500]  # an error answer is logged by the client libraries, too
        settings = {
            "base_url": endpoint.base_url,
            "model": "gpt-4o",
            "api_key_env": "HPL_TEST_TEACHER_KEY",
            "cache": str(tmp_path / "cache"),
            "max_tokens": 32,
            "max_concurrency": 2,
            "max_retries": 2,
        }
        with endpoint_policy(settings) as policy:
            records, card = collect_teacher(
                "webshop", webshop_env_factory, ["ws-200", "ws-201"], policy, model="gpt-4o", max_turns=3
            )
            assert repr(policy).count(SECRET) == 0
    assert {r["headers"]["authorization"] for r in endpoint.requests} == {f"Bearer {SECRET}"}
    # the scripted reply searches forever: no purchase, reward 0, nothing kept, all counted
    assert card["attempted"] == 2 and card["kept"] == 0 and card["rejected"] == {"turn limit": 2}
    assert card["llm"]["calls"] == 6 and card["llm"]["prompt_tokens"] == 600
    outputs = json.dumps([records, card]) + caplog.text
    outputs += "".join(p.read_text() for p in (tmp_path / "cache").rglob("*.json"))
    assert caplog.records and SECRET not in outputs

    monkeypatch.delenv("HPL_TEST_TEACHER_KEY")
    with pytest.raises(LLMError, match=r"\$HPL_TEST_TEACHER_KEY, which is not set") as err:
        with endpoint_policy(settings):
            pass
    assert SECRET not in str(err.value)


def test_zero_shot_endpoint_target_plays_like_a_checkpoint(tmp_path, webshop_env_factory):
    with ScriptedEndpoint() as endpoint:
        target = {"endpoint": {"base_url": endpoint.base_url, "model": "m", "cache": str(tmp_path)}}
        with eval_policy(target, generation={}) as policy:
            assert isinstance(policy, EndpointPolicy)
            episodes = play(webshop_env_factory, policy, ["ws-0"], parallel=2, max_turns=2)
    # the second search is invalid on a results page: counted, never a crash
    assert episodes[0].actions == ["search[red shirt]"] * 2 and episodes[0].invalid_actions == 1
    assert episodes[0].conversations[3]["value"] == first_action_only(REPLY)


def test_table5_counts_the_teacher_in_the_sft_row():
    specs = table5_inputs("webshop", "tiny", ["sft", "eto"], teacher_model="gpt-4o")
    assert specs["sft"]["llm"] == "gpt-4o"
    assert [str(p) for p in specs["sft"]["llm_usage"]] == ["results/webshop/expert/usage.json"]
    assert [str(p) for p in specs["sft"]["generation"]] == ["results/benchmarks/webshop/expert.tsv"]
    assert specs["eto"]["llm"] is None
    assert table5_inputs("webshop", "tiny", ["sft"])["sft"]["llm"] is None


# ------------------------------------------------------------------------------- the real local LLM

MAX_TOKENS = 32  # SmolLM2 on 2 shared, busy CPU cores: 30-60 s per request measured here
TASKS = 2
MAX_TURNS = 2


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    folder = prepare_smollm2()
    log_path = tmp_path_factory.mktemp("llm-server") / "server.log"
    with LocalLLMServer(folder, log_path=log_path) as server:
        yield server
    assert not server.running()


@pytest.fixture
def factories(request, alfworld_data, webshop_mirror, intercode_mirror, tmp_path_factory):
    """bench -> (make_env, a few task ids)."""

    def alfworld():
        cache = tmp_path_factory.mktemp("alfworld_cache")
        make = lambda: make_env("alfworld", data_dir=alfworld_data, max_turns=MAX_TURNS, cache_dir=str(cache))  # noqa: E731
        return make, make().task_ids("seen")[:TASKS]

    def webshop():
        make = lambda: make_env("webshop", data_dir=webshop_mirror, max_turns=MAX_TURNS)  # noqa: E731
        return make, ["ws-200", "ws-201"]

    def intercode_sql():
        server = request.getfixturevalue("sql_server")
        make = lambda: make_env(  # noqa: E731
            "intercode_sql", data_dir=intercode_mirror, server=server, max_turns=MAX_TURNS
        )
        return make, make().task_ids("train")[:TASKS]

    return {"alfworld": alfworld, "webshop": webshop, "intercode_sql": intercode_sql}


MEASURED: dict[str, dict] = {}


@pytest.mark.parametrize("bench", ["alfworld", "webshop", "intercode_sql"])
def test_smollm2_teacher_on_each_benchmark(bench, smollm2, factories, tmp_path):
    make, tasks = factories[bench]()
    cache = tmp_path / "cache"
    policy = EndpointPolicy(
        smollm2.base_url, smollm2.model, cache_dir=cache, max_tokens=MAX_TOKENS, max_concurrency=2
    )
    started = time.perf_counter()
    kept, card = collect_teacher(
        bench, make, tasks, policy, model=model_label({}), max_turns=MAX_TURNS, threshold=0.0
    )
    seconds = time.perf_counter() - started
    policy.close()
    # threshold 0 keeps every episode: each is a schema-valid trajectory of its task
    assert sorted(r["id"] for r in kept) == sorted(tasks)
    for record in kept:
        validate_trajectory(record)
        assert record["source"] == "teacher" and 1 <= record["n_actions"] <= MAX_TURNS
        assert record["conversations"][0]["value"] == make().instruction()
        assert all(t["value"].count("\nAction:") <= 1 for t in record["conversations"][3::2])
    assert card["attempted"] == TASKS and card["kept"] == TASKS and card["keep_threshold"] == 0.0
    assert card["llm"]["calls"] == card["llm"]["requests"] == sum(r["turns"] for r in kept)
    assert card["llm"]["completion_tokens"] > 0 and card["teacher"]["model"].startswith("SmolLM2")
    assert 0.0 <= card["success_rate"] <= 1.0 and card["prompt"]

    # the same run again, with the server's address gone: every reply from the cache, zero calls
    offline = EndpointPolicy(
        _dead_url(), smollm2.model, cache_dir=cache, max_tokens=MAX_TOKENS, max_retries=0
    )
    again, card2 = collect_teacher(
        bench, make, tasks, offline, model=model_label({}), max_turns=MAX_TURNS, threshold=0.0
    )
    assert offline.usage.calls == 0 and offline.usage.cache_hits == card["llm"]["calls"]
    assert sorted(again, key=lambda r: r["id"]) == sorted(kept, key=lambda r: r["id"])

    # the benchmark's own threshold: only episodes reaching it are kept, the others are counted
    _, strict = collect_teacher(bench, make, tasks, offline, model="SmolLM2", max_turns=MAX_TURNS)
    assert strict["keep_threshold"] == KEEP_THRESHOLD[bench]
    assert strict["kept"] == sum(r["reward"] >= KEEP_THRESHOLD[bench] for r in kept)
    assert strict["kept"] + sum(strict["rejected"].values()) == TASKS
    MEASURED[bench] = {
        "seconds": round(seconds, 1),
        "calls": card["llm"]["calls"],
        "prompt_tokens": card["llm"]["prompt_tokens"],
        "completion_tokens": card["llm"]["completion_tokens"],
        "success_rate": card["success_rate"],
        "mean_reward": card["mean_reward"],
        "kept_at_threshold": strict["kept"],
    }
    print(f"\nSmolLM2 teacher on {bench}: {MEASURED[bench]}")


def test_zero_shot_local_hugging_face_path(smollm2, webshop_mirror):
    """kind: zeroshot with `path`: the model as it is, through the same HFPolicy as trained rows."""
    generation = {"max_new_tokens": 24, "max_prompt_tokens": 2048, "parallel_episodes": 2}
    with eval_policy(str(Path(smollm2.model)), generation) as policy:
        episodes = play(
            lambda: make_env("webshop", data_dir=webshop_mirror, max_turns=1), policy, ["ws-0"], max_turns=1
        )
    assert episodes[0].turns == 1 and 0.0 <= episodes[0].reward <= 1.0
    validate_trajectory(episodes[0].record())
