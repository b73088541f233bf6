"""A policy that plays episodes through any OpenAI-compatible chat endpoint (teacher data, zero-shot rows).

`EndpointPolicy` implements the `hpl.policy.Policy` protocol over `hpl.llm.ChatClient`:

- **Prompting**: the conversation the environment opened (its instruction turn, "OK", the first
  observation with the task; then the agent's ReAct turns and "Observation: ..." turns) is sent as chat
  messages (human -> user, gpt -> assistant). It is the same prompt the trained models see, so a zero-shot
  row and a teacher are prompted exactly like the SFT/DPO rows, with the paper's ReAct format.
- **One action per turn**: a chat model often keeps writing after its action (an invented observation, the
  next step). Only the first complete "Action: ..." line is an action, so the reply is cut after that line
  (`first_action_only`) before it enters the conversation; what follows was never executed.
- **Concurrency**: `act` answers the conversations of all live episodes with up to `max_concurrency`
  requests in flight (a thread pool; each worker thread has its own `ChatClient`, so usage counters need no
  lock), in the input order.
- **Cache, retries, key hygiene**: those of `ChatClient` (one JSON file per request hash, so a rerun costs
  zero calls; backoff on 429/5xx/connection errors; the key is never logged). `usage` sums every worker's
  counters.

`endpoint_policy(settings, server_log)` is the context manager the rules use: with `base_url` null it starts
the local SmolLM2 server (`hpl.llm_server`) for the block, as the semantic segmenter does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields
from typing import Any

from hpl.llm import ChatClient, LLMError, LLMUsage

log = logging.getLogger(__name__)

ROLES = {"human": "user", "gpt": "assistant"}
LOCAL_MODEL_LABEL = "SmolLM2-135M-Instruct (local transformers serve)"
DEFAULTS: dict[str, Any] = {
    "base_url": None,
    "model": None,
    "api_key_env": None,
    "temperature": 0.0,
    "max_tokens": 256,
    "max_concurrency": 8,
    "max_retries": 4,
    "timeout": 300.0,
    "cache": "resources/llm_cache",
}


def to_messages(conversation: Sequence[dict]) -> list[dict[str, str]]:
    """Chat messages of a conversation in the ETO schema (human -> user, gpt -> assistant)."""
    return [{"role": ROLES[turn["from"]], "content": turn["value"]} for turn in conversation]


def first_action_only(reply: str) -> str:
    """`reply` up to the end of its first non-empty "Action:" line (all of it when there is none).

    >>> first_action_only("Thought: go.\\nAction: go to desk 1\\nObservation: On the desk 1, you see ...")
    'Thought: go.\\nAction: go to desk 1'
    >>> first_action_only("Thought: hmm")
    'Thought: hmm'
    """
    start = 0
    while (at := reply.find("Action:", start)) >= 0:
        end = reply.find("\n", at)
        end = len(reply) if end < 0 else end
        if reply[at + len("Action:") : end].strip():
            return reply[:end].rstrip()
        start = at + len("Action:")
    return reply.strip()


def public_url(url: str | None) -> str | None:
    """An endpoint URL fit for logs and data cards: no user info, query or fragment (where keys may hide)."""
    if not url:
        return url
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def api_key_from(settings: dict) -> str | None:
    """The API key named by `settings["api_key_env"]` (an environment variable name, never a key).

    None leaves the choice to ChatClient ($HPL_LLM_API_KEY, then $OPENAI_API_KEY).
    """
    name = settings.get("api_key_env")
    if not name:
        return None
    value = os.environ.get(name)
    if not value:
        raise LLMError(f"api_key_env names ${name}, which is not set in the environment")
    return value


class EndpointPolicy:
    """A `Policy` answering each conversation with one chat completion (module docstring)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        max_tokens: int | None = 256,
        max_concurrency: int = 8,
        max_retries: int = 4,
        timeout: float = 300.0,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, not {max_concurrency}")
        self.base_url, self.model = base_url, model
        self.max_tokens, self.max_concurrency = max_tokens, max_concurrency
        self._client_args = {
            "base_url": base_url,
            "model": model,
            "api_key": api_key,
            "cache_dir": cache_dir,
            "max_retries": max_retries,
            "timeout": timeout,
        }
        ChatClient(**self._client_args)  # fail now (missing URL/model) rather than inside a worker
        self._local = threading.local()
        self._clients: list[ChatClient] = []
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def __repr__(self) -> str:  # the key stays inside the clients, whose repr hides it
        return f"EndpointPolicy(base_url={self.base_url!r}, model={self.model!r})"

    def _client(self) -> ChatClient:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = ChatClient(**self._client_args)
            with self._lock:
                self._clients.append(client)
        return client

    def reply(self, conversation: Sequence[dict], temperature: float = 0.0) -> str:
        """One agent turn for a conversation ending with a human turn."""
        text = self._client().chat(
            to_messages(conversation), temperature=temperature, max_tokens=self.max_tokens
        )
        return first_action_only(text)

    def act(
        self, conversations: Sequence[list[dict]], temperature: float = 0.0, keys: Sequence[str] | None = None
    ) -> list[str]:
        # `keys` name sampling streams for local models; an endpoint samples on its side, and the cache
        # makes a repeated identical request give the same reply, so a rerun repeats the run
        if len(conversations) <= 1 or self.max_concurrency == 1:
            return [self.reply(c, temperature) for c in conversations]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="endpoint")
        return list(self._pool.map(lambda c: self.reply(c, temperature), conversations))

    @property
    def usage(self) -> LLMUsage:
        """Every worker's counters, summed."""
        total = LLMUsage()
        with self._lock:
            for client in self._clients:
                for f in fields(LLMUsage):
                    setattr(total, f.name, getattr(total, f.name) + getattr(client.usage, f.name))
        return total

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __enter__(self) -> EndpointPolicy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def resolve(settings: dict | None) -> dict[str, Any]:
    """`settings` (the `teacher` section or a zero-shot `endpoint`) with defaults for absent keys."""
    return {**DEFAULTS, **{k: v for k, v in (settings or {}).items() if v is not None}}


#: the settings that change what the endpoint answers; the others (concurrency, retries, timeout, cache
#: folder, key variable) only change how it is asked, so the rules leave them out of their params and a
#: changed concurrency does not redo the expert data and everything trained on it
RESULT_KEYS = ("base_url", "model", "temperature", "max_tokens")


def result_settings(settings: dict | None) -> dict[str, Any]:
    resolved = resolve(settings)
    return {key: resolved[key] for key in RESULT_KEYS}


def model_label(settings: dict) -> str:
    """The teacher/zero-shot model as tables and data cards name it."""
    settings = resolve(settings)
    return settings["model"] if settings["base_url"] else LOCAL_MODEL_LABEL


@contextlib.contextmanager
def endpoint_policy(settings: dict | None, server_log: str | None = None) -> Iterator[EndpointPolicy]:
    """An EndpointPolicy for the configured endpoint; with base_url null, the local SmolLM2 server
    (started for the block, always stopped after it)."""
    settings = resolve(settings)
    common = {
        "api_key": api_key_from(settings),
        "cache_dir": settings["cache"],
        "max_tokens": settings["max_tokens"],
        "max_concurrency": settings["max_concurrency"],
        "max_retries": settings["max_retries"],
        "timeout": settings["timeout"],
    }
    if settings["base_url"]:
        if not settings["model"]:
            raise LLMError(
                f"an endpoint ({public_url(settings['base_url'])}) needs a model name: set `model`"
            )
        with EndpointPolicy(settings["base_url"], settings["model"], **common) as policy:
            yield policy
        return
    from hpl.llm_server import smollm2_server

    with smollm2_server(log_path=server_log) as server:
        log.info("local LLM server %s ready in %.1f s", server.base_url, server.start_seconds or 0.0)
        with EndpointPolicy(server.base_url, server.model, **common) as policy:
            yield policy


def is_endpoint_target(target: Any) -> bool:
    """Whether an evaluation target (the evaluate rule's `checkpoint` param) names an endpoint."""
    return isinstance(target, dict) and "endpoint" in target


@contextlib.contextmanager
def eval_policy(target: Any, generation: dict, server_log: str | None = None) -> Iterator[Any]:
    """The policy an evaluation job plays with: a checkpoint folder / hub id (HFPolicy, trained or
    zero-shot) or {"endpoint": settings} (a zero-shot row through an endpoint)."""
    if is_endpoint_target(target):
        with endpoint_policy(target["endpoint"], server_log) as policy:
            yield policy
            log.info("LLM usage: %s", policy.usage.as_dict())
        return
    from hpl.policy import job_policy

    with job_policy(target, generation, server_log=server_log) as policy:
        yield policy
