"""Policies: something that answers a batch of conversations with one agent turn each.

`HFPolicy` wraps a Hugging Face causal LM and generates for many live episodes in one padded batch
(left padding, KV cache within a turn). Greedy when temperature is 0 (evaluation), sampled otherwise
(exploration, Monte Carlo rollouts). Prompts follow the shared context rule (`hpl.context`) that the model
was trained with, read from its folder (`context.json`): the same reply budget and window, so a prompt is
token for token what training showed before the same reply.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from hpl.admissible import AdmissibleActions, token_texts
from hpl.context import generation_rule, prompt_ids
from hpl.models import load_model, stop_token_ids
from hpl.prefix_cache import PrefixStore, decode

ACTION_MODES = ("free", "admissible")  # generation.actions (hpl.admissible)


class Policy(Protocol):
    def act(
        self, conversations: Sequence[list[dict]], temperature: float = 0.0, keys: Sequence[str] | None = None
    ) -> list[str]:
        """One agent reply per conversation (each ends with a human turn).

        `keys` name each conversation's turn (episode run id and turn); a sampling policy draws from a
        random stream of that key, so a reply does not depend on which other episodes share the batch
        and a sharded run repeats the unsharded one.

        A policy whose `constrains_actions` attribute is True also takes `admissible`: per conversation,
        the environment's admissible actions (None where the benchmark has no such list); see
        `hpl.admissible`.
        """


def wants_admissible(policy: Policy) -> bool:
    """Whether the episode loops should hand `policy` the admissible actions of each state."""
    return bool(getattr(policy, "constrains_actions", False))


def key_seed(seed: int, key: str, position: int) -> int:
    """A stable 63-bit seed for token `position` of the reply named `key` (Python's hash() is salted)."""
    digest = hashlib.blake2b(f"{seed}|{key}|{position}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


class KeyedSampler:
    """A logits processor that samples each row's next token from its own stream (`key_seed`) and turns
    the scores into a one-hot choice, so greedy decoding emits it. transformers' own sampling draws the
    whole batch from one global generator, which ties a row's reply to its batch neighbours.

    The draw is Gumbel-max: argmax(scores / T + Gumbel noise of the key), an exact sample of
    softmax(scores / T). A row's logits differ in the last float bits with the batch around it (padding
    width, thread count); Gumbel-max changes its choice only when the two best perturbed scores tie within
    that error, whereas inverse-CDF sampling changes it whenever the one uniform draw falls that close to
    any of the vocabulary's cumulative boundaries (measured: one flip in a CI-scale run of step rollouts).
    """

    def __init__(self, keys: Sequence[str], temperature: float, seed: int, prompt_width: int) -> None:
        self.keys, self.temperature, self.seed, self.width = list(keys), temperature, seed, prompt_width

    def __call__(self, input_ids, scores):
        import torch

        position = input_ids.shape[1] - self.width
        logits = scores.float().cpu() / self.temperature
        chosen = [
            int(torch.argmax(logits[row] + self.noise(key, position, logits.shape[1])))
            for row, key in enumerate(self.keys)
        ]
        onehot = torch.full_like(scores, float("-inf"))
        onehot[torch.arange(len(chosen)), torch.tensor(chosen, device=scores.device)] = 0.0
        return onehot

    def noise(self, key: str, position: int, size: int):
        """Gumbel(0, 1) noise of the reply `key` at token `position` (float64: no infinite draws)."""
        import torch

        generator = torch.Generator().manual_seed(key_seed(self.seed, key, position))
        uniform = torch.rand(size, generator=generator, dtype=torch.float64).clamp_(min=1e-300)
        return -torch.log(-torch.log(uniform))


def fit_context(tokenizer, turns: list[dict], max_prompt_tokens: int) -> list[int]:
    """Prompt ids for `turns` under the shared context rule (`hpl.context.prompt_ids`)."""
    return prompt_ids(tokenizer, turns, max_prompt_tokens).ids


class ActionLineStop:
    """Stops a sequence once its reply holds a complete action line ("Action: ...\n").

    Only that line reaches the environment (`hpl.react.parse_action`), so tokens after it are wasted;
    a sampled (temperature 1) or barely trained policy often rambles on to `max_new_tokens` otherwise.
    """

    def __init__(self, tokenizer, prompt_width: int) -> None:
        self.tokenizer = tokenizer
        self.width = prompt_width

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        # a reply can only complete its action line with a token holding "\n" (a single byte, never part of
        # another character), so only those rows are decoded in full: not every row at every step
        texts = token_texts(self.tokenizer)
        done = [
            "\n" in texts[last]
            and _has_action_line(self.tokenizer.decode(row[self.width :], skip_special_tokens=True))
            for row, last in zip(input_ids, input_ids[:, -1].tolist())
        ]
        return torch.tensor(done, device=input_ids.device)


def _has_action_line(text: str) -> bool:
    at = text.rfind("Action:")
    return at >= 0 and "\n" in text[at:] and bool(text[at + 7 : text.index("\n", at)].strip())


class HFPolicy:
    """A Hugging Face causal LM as a policy. A model trained here carries its context rule (reply budget
    and window, `context.json`), which wins over the arguments; other models (a hub id, an untrained base)
    use `max_new_tokens` and `max_prompt_tokens` (null: the model's context minus the reply budget)."""

    def __init__(
        self,
        model_path: str,
        max_new_tokens: int | None = 64,
        max_prompt_tokens: int | None = 2048,
        batch_size: int = 16,
        device: str | None = None,
        seed: int = 0,
        actions: str = "free",
        prefix_cache: bool = True,
        lookahead: int = 0,
    ) -> None:
        import torch

        if actions not in ACTION_MODES:
            raise ValueError(f"generation.actions must be one of {ACTION_MODES}, not {actions!r}")
        self.constrains_actions = actions == "admissible"

        self.model, self.tokenizer = load_model(model_path)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device).eval()
        positions = getattr(self.model.config, "max_position_embeddings", None)
        rule = generation_rule(model_path, max_new_tokens, max_prompt_tokens, positions)
        self.max_new_tokens, self.max_prompt_tokens = rule.reply, rule.window
        self.batch_size = batch_size
        self.stop_ids = stop_token_ids(self.tokenizer)
        self.seed = seed
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        # keys and values of each live conversation's encoded tokens (hpl.prefix_cache); None: re-encode
        self.prefixes = PrefixStore(recent=batch_size) if prefix_cache else None
        self.lookahead = lookahead  # draft tokens per forward on the prefix-cache path (prompt lookup)

    def act(
        self,
        conversations: Sequence[list[dict]],
        temperature: float = 0.0,
        keys: Sequence[str] | None = None,
        admissible: Sequence[Sequence[str] | None] | None = None,
    ) -> list[str]:
        replies: list[str] = []
        names = [key.rsplit("/", 1)[0] for key in keys] if keys else [None] * len(conversations)
        for start in range(0, len(conversations), self.batch_size):
            chunk = slice(start, start + self.batch_size)
            replies += self._generate(
                conversations[chunk],
                temperature,
                keys[chunk] if keys else None,
                admissible[chunk] if admissible and self.constrains_actions else None,
                names[chunk],
            )
        if self.prefixes is not None:
            self.prefixes.keep({name for name in names if name is not None})
        return replies

    def _generate(
        self,
        conversations: Sequence[list[dict]],
        temperature: float,
        keys: Sequence[str] | None,
        admissible: Sequence[Sequence[str] | None] | None,
        names: Sequence[str | None],
    ) -> list[str]:
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        prompts = [fit_context(self.tokenizer, turns, self.max_prompt_tokens) for turns in conversations]
        keyed = temperature > 0 and keys is not None
        if self.prefixes is not None and (temperature == 0 or keyed):
            return self._generate_reusing(prompts, temperature, keys if keyed else None, admissible, names)
        width = max(len(p) for p in prompts)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=self.device)
        attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device)
        sample = temperature > 0 and not keyed
        processors = self._processors(admissible, keys if keyed else None, temperature, width)
        # unkeyed sampling uses transformers' global RNG: seed it from our own stream so runs repeat
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=self.generator)))
        with torch.no_grad():
            out = self.model.generate(
                input_ids=input_ids,
                attention_mask=attention,
                max_new_tokens=self.max_new_tokens,
                do_sample=sample,
                temperature=temperature if sample else None,
                top_p=None,
                top_k=None,
                eos_token_id=self.stop_ids,
                pad_token_id=pad,
                logits_processor=LogitsProcessorList(processors),
                stopping_criteria=StoppingCriteriaList([ActionLineStop(self.tokenizer, width)]),
            )
        new_tokens = out[:, width:]
        return [self.tokenizer.decode(row, skip_special_tokens=True).strip() for row in new_tokens]

    def _processors(self, admissible, keys: Sequence[str] | None, temperature: float, width: int) -> list:
        """The admissible-action constraint where asked, then keyed sampling where `keys` are given (after
        the constraint: it samples from the distribution renormalised over valid actions)."""
        processors = (
            [AdmissibleActions(self.tokenizer, admissible, width, self.stop_ids, self.max_new_tokens)]
            if admissible
            else []
        )
        if keys is not None:
            processors.append(KeyedSampler(keys, temperature, self.seed, width))
        return processors

    def _generate_reusing(
        self,
        prompts: list[list[int]],
        temperature: float,
        keys: Sequence[str] | None,
        admissible: Sequence[Sequence[str] | None] | None,
        names: Sequence[str | None],
    ) -> list[str]:
        """Greedy or keyed replies that encode only what each conversation has not encoded yet."""
        rows = [(*self.prefixes.lookup(name, prompt), prompt) for name, prompt in zip(names, prompts)]
        per_row = [
            self._processors(
                [admissible[row]] if admissible else None, [keys[row]] if keys else None, temperature, 0
            )
            for row in range(len(rows))
        ]
        replies, entries = decode(
            self.model,
            rows,
            max_new_tokens=self.max_new_tokens,
            pad_id=self.tokenizer.pad_token_id,
            stop_ids=self.stop_ids,
            processors=per_row,
            stop_when=ActionLineStop(self.tokenizer, 0),
            lookahead=self.lookahead,
        )
        for name, entry in zip(names, entries):
            if name is not None:
                self.prefixes.put(name, entry)
        return [self.tokenizer.decode(reply, skip_special_tokens=True).strip() for reply in replies]


def policy_from_config(model_path: str, generation: dict, batch_size: int | None = None) -> HFPolicy:
    """An HFPolicy with the config's `generation` settings (batch: `parallel_episodes` unless given); a
    model trained here brings its own reply budget and window (`context.json`). `generation["actions"]` is
    the mode already resolved for the job's benchmark (rules/common.smk)."""
    return HFPolicy(
        model_path,
        max_new_tokens=generation.get("max_new_tokens"),
        max_prompt_tokens=generation.get("max_prompt_tokens"),
        batch_size=batch_size or generation["parallel_episodes"],
        actions=generation.get("actions", "free"),
        prefix_cache=generation.get("prefix_cache", True),
        lookahead=generation.get("lookahead", 0),
    )


@contextlib.contextmanager
def job_policy(
    model_path: str, generation: dict, batch_size: int | None = None, server_log: str | None = None
) -> Iterator[Any]:
    """The policy a generation job plays with: the checkpoint inside this process (HFPolicy), or, with
    `generation.server` set (vllm, transformers), the checkpoint served for the block (hpl.served_policy;
    the server is stopped however the block ends)."""
    if generation.get("server"):
        from hpl.served_policy import served_policy

        batch = {"parallel_episodes": batch_size or generation["parallel_episodes"]}
        with served_policy(model_path, {**generation, **batch}, server_log) as policy:
            yield policy
        return
    yield policy_from_config(model_path, generation, batch_size)
