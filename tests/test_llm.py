"""The LLM client (cache, retries, errors, key hygiene, counters) and the real local LLM server.

Two kinds of endpoint, both real HTTP on 127.0.0.1:
- a tiny scripted OpenAI-compatible server (http.server in a thread) that can answer 500 on demand and
  records every request it gets, for retries and call counting;
- SmolLM2-135M-Instruct behind `transformers serve` (session fixture: started once), for the semantic
  segmenter end to end. Its replies are not judged, only the code path: a valid segmentation and a status.
"""

import json
import logging
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hpl.llm import ChatClient, LLMError, canonical_request, request_key
from hpl.llm_server import LLMServerError, LocalLLMServer, free_port, prepare_smollm2
from hpl.segmenters import n_actions, validate_segments
from hpl.segmenters.semantic import semantic_segments
from hpl.trajectory import build_trajectory

SECRET = "sk-test-DO-NOT-LEAK-8f3a1c"
MESSAGES = [{"role": "user", "content": "Split: 0. go to desk 1  1. take pen 1"}]


# ------------------------------------------------------------------------------ a scripted fake endpoint


class FakeEndpoint:
    """An OpenAI-compatible chat endpoint answering with the statuses in `script`, then 200s."""

    def __init__(self, reply="[[0, 1]]"):
        self.reply = reply
        self.script: list[int] = []
        self.requests: list[dict] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                headers = {k.lower(): v for k, v in self.headers.items()}
                endpoint.requests.append({"path": self.path, "headers": headers, "body": body})
                status = endpoint.script.pop(0) if endpoint.script else 200
                if status == 200:
                    payload = {
                        "id": "chatcmpl-1",
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
                        "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16},
                    }
                else:
                    payload = {"error": {"message": f"scripted failure {status}", "type": "server_error"}}
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):  # keep test output clean
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


@pytest.fixture
def endpoint():
    with FakeEndpoint() as fake:
        yield fake


def _dead_url():
    return f"http://127.0.0.1:{free_port()}/v1"  # nobody listens there


# ---------------------------------------------------------------------------------------------- client


def test_settings_come_from_the_environment(monkeypatch, endpoint, tmp_path):
    monkeypatch.setenv("HPL_LLM_BASE_URL", endpoint.base_url)
    monkeypatch.setenv("HPL_LLM_MODEL", "env-model")
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    client = ChatClient(cache_dir=tmp_path)
    assert client.chat(MESSAGES) == "[[0, 1]]"
    request = endpoint.requests[0]
    assert request["body"]["model"] == "env-model" and request["body"]["temperature"] == 0.0
    assert request["headers"]["authorization"] == f"Bearer {SECRET}"
    assert SECRET not in repr(client)


def test_missing_settings_are_named(monkeypatch):
    for name in ("HPL_LLM_BASE_URL", "OPENAI_BASE_URL", "HPL_LLM_MODEL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(LLMError, match="HPL_LLM_BASE_URL"):
        ChatClient(model="m")
    with pytest.raises(LLMError, match="HPL_LLM_MODEL"):
        ChatClient(base_url="http://127.0.0.1:1/v1")


def test_cache_answers_repeated_requests_without_calls(endpoint, tmp_path):
    client = ChatClient(base_url=endpoint.base_url, model="m", cache_dir=tmp_path)
    first = client.complete(MESSAGES, temperature=0.0, max_tokens=32)
    again = client.complete(MESSAGES, temperature=0.0, max_tokens=32)
    assert first == again and len(endpoint.requests) == 1
    assert (client.usage.calls, client.usage.cache_hits, client.usage.requests) == (1, 1, 2)
    assert (client.usage.prompt_tokens, client.usage.completion_tokens) == (11, 5)
    assert (client.usage.cached_prompt_tokens, client.usage.cached_completion_tokens) == (11, 5)

    # the file is named by the sha256 of the canonical request
    key = request_key(canonical_request("m", MESSAGES, 0.0, 32))
    assert first["key"] == key and client.cache_path(key).exists()
    assert json.loads(client.cache_path(key).read_text())["request"]["messages"] == MESSAGES

    # any setting that changes the answer is part of the key
    client.complete(MESSAGES, temperature=0.0, max_tokens=33)
    client.complete(MESSAGES, temperature=0.5, max_tokens=32)
    assert len(endpoint.requests) == 3 and client.usage.calls == 3

    # a rerun against an endpoint that is down is served entirely from the cache: zero calls
    rerun = ChatClient(base_url=_dead_url(), model="m", cache_dir=tmp_path, max_retries=0)
    assert rerun.chat(MESSAGES, temperature=0.0, max_tokens=32) == "[[0, 1]]"
    assert (rerun.usage.calls, rerun.usage.cache_hits) == (0, 1)


def test_transient_errors_are_retried(endpoint, tmp_path):
    endpoint.script = [500, 503]
    client = ChatClient(base_url=endpoint.base_url, model="m", cache_dir=tmp_path, max_retries=3)
    started = time.monotonic()
    assert client.chat(MESSAGES) == "[[0, 1]]"
    assert len(endpoint.requests) == 3  # two failures, then the answer
    assert client.usage.calls == 1
    assert time.monotonic() - started > 0.5  # it backed off between tries


def test_rate_limit_is_retried(endpoint):
    endpoint.script = [429]
    client = ChatClient(base_url=endpoint.base_url, model="m", max_retries=2)
    assert client.chat(MESSAGES) == "[[0, 1]]" and len(endpoint.requests) == 2


def test_persistent_server_errors_raise_naming_the_url(endpoint):
    endpoint.script = [500] * 10
    client = ChatClient(base_url=endpoint.base_url, model="m", api_key=SECRET, max_retries=1)
    with pytest.raises(LLMError) as err:
        client.chat(MESSAGES)
    assert endpoint.base_url in str(err.value) and "500" in str(err.value)
    assert SECRET not in str(err.value)
    assert len(endpoint.requests) == 2


def test_a_reply_without_text_raises_and_is_not_cached(tmp_path):
    """`content: null` is the endpoint failing, not the model answering nothing: it must not become an
    empty (invalid) action or an unparsable segmentation."""
    with FakeEndpoint(reply=None) as broken:
        client = ChatClient(base_url=broken.base_url, model="m", cache_dir=tmp_path, max_retries=0)
        with pytest.raises(LLMError, match=rf"{broken.base_url} answered without reply text \(stop\)"):
            client.chat(MESSAGES)
    assert not list(tmp_path.rglob("*.json"))
    with FakeEndpoint(reply="") as terse:  # an empty text is the model's own answer: returned as is
        assert ChatClient(base_url=terse.base_url, model="m", max_retries=0).chat(MESSAGES) == ""


def test_unreachable_endpoint_raises_naming_the_url():
    url = _dead_url()
    client = ChatClient(base_url=url, model="m", api_key=SECRET, max_retries=1)
    with pytest.raises(LLMError, match="unreachable") as err:
        client.chat(MESSAGES)
    assert url in str(err.value) and SECRET not in str(err.value)
    assert client.usage.calls == 0


def test_api_key_is_never_logged_or_cached(endpoint, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    for name in ("openai", "httpx2", "httpx", "httpcore", "hpl"):
        caplog.set_level(logging.DEBUG, logger=name)
    endpoint.script = [500]
    client = ChatClient(
        base_url=endpoint.base_url, model="m", api_key=SECRET, cache_dir=tmp_path, max_retries=2
    )
    client.chat(MESSAGES)
    client.chat(MESSAGES)
    with pytest.raises(LLMError):
        ChatClient(base_url=_dead_url(), model="m", api_key=SECRET, max_retries=0).chat(MESSAGES)
    assert endpoint.requests[-1]["headers"]["authorization"] == f"Bearer {SECRET}"  # it was used...
    assert caplog.records  # ...the libraries did log at DEBUG...
    assert SECRET not in caplog.text  # ...but never the key
    files = list(tmp_path.rglob("*"))
    assert any(f.suffix == ".json" for f in files)
    for path in files:
        if path.is_file():
            assert SECRET not in path.read_text()


# ------------------------------------------------------------------------------------ real local server


@pytest.fixture(scope="session")
def local_llm(tmp_path_factory):
    """SmolLM2-135M-Instruct behind `transformers serve`, started once per test session."""
    folder = prepare_smollm2()  # converted once per machine, cached under resources/models
    log_path = tmp_path_factory.mktemp("llm-server") / "server.log"
    with LocalLLMServer(folder, log_path=log_path) as server:
        yield server
    assert not server.running()


def _short_trajectory():
    steps = [
        ("Thought: find the pen.\nAction: go to desk 1", "On the desk 1, you see a pen 1."),
        ("Thought: take it.\nAction: take pen 1 from desk 1", "You pick up the pen 1 from the desk 1."),
        ("Thought: the drawer.\nAction: go to drawer 1", "The drawer 1 is closed."),
        ("Thought: open it.\nAction: open drawer 1", "You open the drawer 1."),
    ]
    return build_trajectory(
        "pen-1", "Interact with a household.", "Your task is to: put a pen in drawer 1.", steps, 1.0
    )


def test_semantic_segmenter_against_the_local_server(local_llm, tmp_path):
    record = _short_trajectory()
    client = ChatClient(base_url=local_llm.base_url, model=local_llm.model, cache_dir=tmp_path, max_retries=1)
    result = semantic_segments(record, client, max_tokens=40)
    validate_segments(result.segments, n_actions(record))
    assert result.status in {"ok", "repaired", "fallback"}
    assert isinstance(result.reply, str) and result.reply
    assert client.usage.calls == 1 and client.usage.completion_tokens > 0

    # the same request again, with the endpoint gone: answered from the cache, zero calls
    offline = ChatClient(base_url=_dead_url(), model=local_llm.model, cache_dir=tmp_path, max_retries=0)
    replay = semantic_segments(record, offline, max_tokens=40)
    assert (replay.segments, replay.status, replay.reply) == (result.segments, result.status, result.reply)
    assert (offline.usage.calls, offline.usage.cache_hits) == (0, 1)


def test_local_server_lists_its_model_and_stops_cleanly(local_llm):
    import urllib.request

    with urllib.request.urlopen(f"{local_llm.base_url}/models", timeout=10) as response:
        ids = [entry["id"] for entry in json.load(response)["data"]]
    assert ids == [local_llm.model]
    assert local_llm.start_seconds is not None and local_llm.start_seconds > 0

    # a server that fails to start is stopped too, and the error says why
    bogus = LocalLLMServer(local_llm.model_dir.parent / "no-such-model")
    with pytest.raises(LLMServerError, match="config.json"):
        bogus.start()
    assert not bogus.running()


def test_a_server_dying_mid_job_fails_the_job_naming_the_server(local_llm, tmp_path):
    """A crash of the local server is an infrastructure failure: the semantic segmenter raises an error
    naming the server and its log, rather than falling back and writing a row."""
    log_path = tmp_path / "server.log"
    with pytest.raises(LLMServerError) as err:
        with LocalLLMServer(local_llm.model_dir, log_path=log_path, startup_timeout=240) as server:
            client = ChatClient(base_url=server.base_url, model=server.model, max_retries=1)
            assert isinstance(client.chat(MESSAGES, max_tokens=5), str)  # alive: a real reply
            pid = server.process.pid
            server.process.kill()
            server.process.wait()
            semantic_segments(_short_trajectory(), client, max_tokens=40)
    message = str(err.value)
    assert f"pid {pid}" in message and "exited with code -9 during the job" in message
    assert str(log_path) in message
    assert isinstance(err.value.__cause__, LLMError)  # what the client saw: the endpoint unreachable


def test_stop_leaves_no_process(local_llm, tmp_path):
    """A second, short-lived server: after the with-block its whole process group is gone."""
    with LocalLLMServer(local_llm.model_dir, log_path=tmp_path / "s.log", startup_timeout=240) as server:
        pid = server.process.pid
        assert server.running()
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
