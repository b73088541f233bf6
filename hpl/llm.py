"""A small chat client for any OpenAI-compatible endpoint, with an on-disk cache and usage counters.

Used by the semantic segmenter (and anything else that asks an external LLM). What it adds to `openai`:

- **Settings from arguments or the environment**: base URL (`HPL_LLM_BASE_URL`, then `OPENAI_BASE_URL`),
  model (`HPL_LLM_MODEL`), API key (`HPL_LLM_API_KEY`, then `OPENAI_API_KEY`; a placeholder when none is
  set, since local servers ignore it). The key is never logged, never put in an error message, never
  written to the cache, and hidden from `repr`.
- **A cache**: every request and its response are stored as one JSON file per request, named by the sha256
  of the canonical request (model, messages, temperature, max_tokens and any extra generation setting,
  serialized with sorted keys). A rerun of the same requests makes zero calls. The endpoint URL is not part
  of the key: the same model asked the same thing at another address (a local server on a new port) gives
  the cached answer.
- **Retries** with exponential backoff on transient errors (connection errors, timeouts, 408/409/429, 5xx):
  this is the `openai` client's own retry loop (`max_retries`; 0.5 s doubling up to 8 s, with jitter, and it
  honours `Retry-After` headers). It was chosen over tenacity because it already classifies the errors
  the way the API documents them and needs no extra dependency. After the last retry an `LLMError` names
  the URL and the cause (never the key).
- **Counters** (`usage`): calls that reached the endpoint, cache hits, prompt/completion tokens of fresh
  calls, and the same token counts of cached answers, so the paper's Table 5 (number of LLM calls) can be
  reported whether or not a rerun was served from the cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hpl.io import read_json, write_json

log = logging.getLogger(__name__)

ENV_BASE_URL = ("HPL_LLM_BASE_URL", "OPENAI_BASE_URL")
ENV_MODEL = ("HPL_LLM_MODEL",)
ENV_API_KEY = ("HPL_LLM_API_KEY", "OPENAI_API_KEY")
PLACEHOLDER_KEY = "no-key"  # the openai client insists on a key; local servers ignore it


class LLMError(RuntimeError):
    """An LLM request failed after its retries; the message names the endpoint URL and the cause."""


@dataclass
class LLMUsage:
    """What a client has done: the numbers behind Table 5's "# LLM calls"."""

    calls: int = 0  # requests answered by the endpoint (retries of one request count once)
    cache_hits: int = 0  # requests answered from the cache
    prompt_tokens: int = 0  # of fresh calls
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0  # of answers served from the cache (what they cost when first made)
    cached_completion_tokens: int = 0
    seconds: float = 0.0  # wall time spent in fresh calls

    @property
    def requests(self) -> int:
        """Distinct answers obtained, fresh or cached: the paper's number of LLM calls for the dataset."""
        return self.calls + self.cache_hits

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "requests": self.requests}


def _first_env(names: Sequence[str]) -> str | None:
    for name in names:
        if os.environ.get(name):
            return os.environ[name]
    return None


def canonical_request(
    model: str, messages: Sequence[dict], temperature: float, max_tokens: int | None, **extra: Any
) -> dict[str, Any]:
    """The request as it is cached and hashed: only what determines the answer, no transport settings."""
    request = {
        "model": model,
        "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
        "temperature": float(temperature),
        "max_tokens": max_tokens,
    }
    request.update({k: v for k, v in sorted(extra.items()) if v is not None})
    return request


def request_key(request: dict[str, Any]) -> str:
    """sha256 of the canonical JSON (sorted keys, no whitespace) of a request."""
    text = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ChatClient:
    """Chat completions against one OpenAI-compatible endpoint, cached on disk.

    >>> client = ChatClient(base_url="http://127.0.0.1:8000/v1", model="m", cache_dir="cache")  # doctest: +SKIP
    >>> client.chat([{"role": "user", "content": "hi"}])  # doctest: +SKIP
    """

    def __init__(
        self,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        max_retries: int = 4,
        timeout: float = 300.0,
    ) -> None:
        self.base_url = (base_url or _first_env(ENV_BASE_URL) or "").rstrip("/")
        self.model = model or _first_env(ENV_MODEL)
        if not self.base_url:
            raise LLMError(f"no LLM endpoint: pass base_url or set {ENV_BASE_URL[0]}")
        if not self.model:
            raise LLMError(f"no LLM model name: pass model or set {ENV_MODEL[0]}")
        self._api_key = api_key or _first_env(ENV_API_KEY) or PLACEHOLDER_KEY
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.max_retries = max_retries
        self.timeout = timeout
        self.usage = LLMUsage()
        self._client = None  # created on the first fresh call: a fully cached rerun needs no endpoint

    def __repr__(self) -> str:
        return f"ChatClient(base_url={self.base_url!r}, model={self.model!r}, api_key=***)"

    # ------------------------------------------------------------------------------------------- public

    def chat(
        self,
        messages: Sequence[dict],
        temperature: float = 0.0,
        max_tokens: int | None = 256,
        **extra: Any,
    ) -> str:
        """The reply text to `messages` (from the cache when this exact request was made before)."""
        return self.complete(messages, temperature, max_tokens, **extra)["content"]

    def complete(
        self,
        messages: Sequence[dict],
        temperature: float = 0.0,
        max_tokens: int | None = 256,
        **extra: Any,
    ) -> dict[str, Any]:
        """The cached record of a request: {"key", "request", "content", "usage", "finish_reason", ...}."""
        request = canonical_request(self.model, messages, temperature, max_tokens, **extra)
        key = request_key(request)
        cached = self._cache_read(key)
        if cached is not None:
            self.usage.cache_hits += 1
            self.usage.cached_prompt_tokens += cached["usage"].get("prompt_tokens", 0)
            self.usage.cached_completion_tokens += cached["usage"].get("completion_tokens", 0)
            return cached
        record = self._call(request, key)
        self._cache_write(key, record)
        return record

    def cache_path(self, key: str) -> Path | None:
        """The file a request of hash `key` is cached in (two-level fan-out keeps folders small)."""
        return None if self.cache_dir is None else self.cache_dir / key[:2] / f"{key}.json"

    # ------------------------------------------------------------------------------------------ helpers

    def _openai(self):
        if self._client is None:
            import openai

            self._client = openai.OpenAI(
                base_url=self.base_url,
                api_key=self._api_key,
                max_retries=self.max_retries,
                timeout=self.timeout,
            )
        return self._client

    def _call(self, request: dict[str, Any], key: str) -> dict[str, Any]:
        import openai

        started = time.perf_counter()
        try:
            response = self._openai().chat.completions.create(**request)
        except openai.APIStatusError as err:
            raise LLMError(
                f"LLM request to {self.base_url} failed with HTTP {err.status_code} "
                f"(after up to {self.max_retries} retries): {self._scrub(err.message)}"
            ) from None
        except openai.APIError as err:  # connection errors and timeouts
            raise LLMError(
                f"LLM endpoint {self.base_url} unreachable after {self.max_retries} retries: "
                f"{type(err).__name__}: {self._scrub(str(err))}"
            ) from None
        seconds = time.perf_counter() - started
        usage = response.usage
        tokens = {
            "prompt_tokens": int(getattr(usage, "prompt_tokens", 0) or 0),
            "completion_tokens": int(getattr(usage, "completion_tokens", 0) or 0),
        }
        self.usage.calls += 1
        self.usage.prompt_tokens += tokens["prompt_tokens"]
        self.usage.completion_tokens += tokens["completion_tokens"]
        self.usage.seconds += seconds
        if not response.choices or response.choices[0].message.content is None:
            # no reply text is a fault of the endpoint, not an empty answer of the model: never let it
            # reach an agent as an (invalid) action or a segmenter as an unparsable reply
            reason = response.choices[0].finish_reason if response.choices else "no choices"
            raise LLMError(f"LLM endpoint {self.base_url} answered without reply text ({reason})")
        choice = response.choices[0]
        log.debug("LLM call %s to %s took %.1f s (%s)", key[:12], self.base_url, seconds, tokens)
        return {
            "key": key,
            "request": request,
            "content": choice.message.content,
            "finish_reason": choice.finish_reason,
            "usage": tokens,
            "seconds": round(seconds, 3),
            "response_model": getattr(response, "model", None),
        }

    def _scrub(self, text: str) -> str:
        """Belt and braces: an error text echoed by a server must not carry the key into logs."""
        if self._api_key and self._api_key != PLACEHOLDER_KEY:
            text = text.replace(self._api_key, "***")
        return text

    def _cache_read(self, key: str) -> dict[str, Any] | None:
        path = self.cache_path(key)
        if path is None or not path.exists():
            return None
        try:
            return read_json(path)
        except (OSError, json.JSONDecodeError) as err:
            log.warning("ignoring unreadable LLM cache file %s: %s", path, err)
            return None

    def _cache_write(self, key: str, record: dict[str, Any]) -> None:
        path = self.cache_path(key)
        if path is not None:
            write_json(path, record)
