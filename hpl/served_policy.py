"""A trained checkpoint served behind an OpenAI-compatible completions API: `generation.server`.

On a GPU cluster, generation with Hugging Face `generate` on a 7B model is many times slower than vLLM,
which the HPL release serves its agent with. With `generation.server: vllm`, a generation job starts
`vllm serve <checkpoint>` on its GPUs (prefix caching on), plays through `/v1/completions`, and stops the
server however the job ends. `generation.server: transformers` starts `transformers serve` instead: the
same API on any machine, which is how the tests check the whole path here (docs/cluster.md).

The policy sends the very prompt the local policy builds (`hpl.context`: the model's recorded window, the
chat format it was trained on) as text, and asks for at most the recorded reply budget. A reply is cut
after its first action line, as `ActionLineStop` ends local generation there. Sampling is reproducible
per episode: each request carries a seed drawn from the reply's key (`hpl.policy.key_seed`), which vLLM
applies per request, so a reply does not depend on the requests beside it. Greedy replies equal the
local policy's action for action (tests/test_served_policy.py); a server cannot take the admissible-action
constraint, so `generation.actions: admissible` with a server is refused by name.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from hpl.chat import IM_END
from hpl.context import generation_rule
from hpl.endpoint import first_action_only
from hpl.policy import fit_context, key_seed

log = logging.getLogger(__name__)

SERVERS = ("vllm", "transformers")  # generation.server (null: the model runs inside the job)
PROBE = "Thought: the apple 3 is on countertop 12.\nAction: take apple 3 from countertop 12"


class ServedModelError(ValueError):
    """A checkpoint a server would not see as it was trained (the message says why and what to do)."""


def check_servable(model_dir: str | os.PathLike):
    """A server loads the tokenizer with AutoTokenizer: it must split text as the checkpoint's own does.

    The embedded tiny model's tokenizer does not: beside its Qwen2 config AutoTokenizer builds a Qwen2
    tokenizer, whose pre-tokenizer (single digits) differs from the one its merges were learned with
    (hpl.models.load_tokenizer), so the served model would read prompts it was never trained on.
    Returns the checkpoint's own tokenizer.
    """
    from transformers import AutoTokenizer

    from hpl.models import load_tokenizer

    own, auto = load_tokenizer(model_dir), AutoTokenizer.from_pretrained(str(model_dir))
    if (
        own(PROBE, add_special_tokens=False)["input_ids"]
        != auto(PROBE, add_special_tokens=False)["input_ids"]
    ):
        raise ServedModelError(
            f"generation.server: {model_dir} splits text differently under AutoTokenizer "
            f"({type(auto).__name__}, what a server loads) than with its own tokenizer; serve a hub model or "
            "its fine-tune (the paper preset), or set generation.server: null for the embedded tiny model"
        )
    return own


class ServedPolicy:
    """A `Policy` over a completions endpoint serving checkpoint `model_dir` under the name `model`."""

    def __init__(
        self,
        base_url: str,
        model: str,
        model_dir: str | os.PathLike,
        *,
        max_new_tokens: int | None = None,
        max_prompt_tokens: int | None = None,
        max_concurrency: int = 16,
        seed: int = 0,
        engine: str = "vllm",
        timeout: float = 600.0,
        max_retries: int = 2,
        tokenizer=None,
    ) -> None:
        import openai
        from transformers import AutoConfig

        from hpl.models import load_tokenizer

        positions = getattr(AutoConfig.from_pretrained(str(model_dir)), "max_position_embeddings", None)
        rule = generation_rule(model_dir, max_new_tokens, max_prompt_tokens, positions)
        self.model, self.rule, self.seed, self.engine = model, rule, seed, engine
        self.tokenizer = tokenizer or load_tokenizer(model_dir)
        self.client = openai.OpenAI(
            base_url=base_url, api_key="unused", timeout=timeout, max_retries=max_retries
        )
        self.pool = ThreadPoolExecutor(max_workers=max_concurrency)
        self.constrains_actions = False

    def prompt_text(self, turns: list[dict]) -> str:
        """The local policy's prompt (same window, same tokens) as the text a completions request carries."""
        ids = fit_context(self.tokenizer, turns, self.rule.window)
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def _reply(self, turns: list[dict], temperature: float, key: str | None) -> str:
        request: dict[str, Any] = {
            "model": self.model,
            "prompt": self.prompt_text(turns),
            "max_tokens": self.rule.reply,
            "temperature": temperature,
            "stop": [IM_END],
        }
        if temperature > 0:  # the key's own stream: the reply does not depend on its batch neighbours
            request["seed"] = key_seed(self.seed, key or "", 0) % 2**31
            if self.engine == "transformers":  # it samples only when told to, in its own settings field
                request["extra_body"] = {"generation_config": self._sampling_config(temperature)}
        response = self.client.completions.create(**request)
        return first_action_only(response.choices[0].text.strip())

    def _sampling_config(self, temperature: float) -> str:
        """transformers serve's settings for a sampled reply: the whole softmax at `temperature`."""
        eos = self.tokenizer.convert_tokens_to_ids(IM_END)
        settings = {"do_sample": True, "temperature": temperature, "top_k": None, "top_p": 1.0}
        return json.dumps({**settings, "max_new_tokens": self.rule.reply, "eos_token_id": eos})

    def act(
        self,
        conversations: Sequence[list[dict]],
        temperature: float = 0.0,
        keys: Sequence[str] | None = None,
        admissible: Sequence[Sequence[str] | None] | None = None,
    ) -> list[str]:
        keys = keys or [None] * len(conversations)
        return list(
            self.pool.map(lambda pair: self._reply(pair[0], temperature, pair[1]), zip(conversations, keys))
        )

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.client.close()


@contextlib.contextmanager
def served_policy(
    model_dir: str | os.PathLike, generation: dict, server_log: str | None = None
) -> Iterator[ServedPolicy]:
    """Serve `model_dir` with `generation["server"]` for the block (always stopped after it) and yield a
    ServedPolicy over it. The batch of live episodes (`parallel_episodes`) is the requests in flight."""
    from hpl.llm_server import LocalLLMServer

    server = generation["server"]
    if generation.get("actions", "free") != "free":
        raise ValueError(
            f"generation.server: {server} cannot constrain actions; set generation.actions: free for it "
            "(the paper preset does) or generation.server: null"
        )
    if server not in SERVERS:
        raise ValueError(f"generation.server must be one of {', '.join(SERVERS)} or null, not {server!r}")
    if not (Path(model_dir) / "config.json").is_file():
        raise ServedModelError(
            f"generation.server serves checkpoint folders; {model_dir} is none (a hub id: download it first, "
            "e.g. `huggingface-cli download <id> --local-dir <folder>`, and name the folder)"
        )
    tokenizer = check_servable(model_dir)
    with LocalLLMServer(model_dir, log_path=server_log, engine=server) as running:
        policy = ServedPolicy(
            running.base_url,
            running.model,
            model_dir,
            max_new_tokens=generation.get("max_new_tokens"),
            max_prompt_tokens=generation.get("max_prompt_tokens"),
            max_concurrency=generation.get("parallel_episodes", 16),
            engine=server,
            tokenizer=tokenizer,
        )
        try:
            yield policy
        finally:
            policy.close()
