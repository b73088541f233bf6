"""Prefix reuse for the local policy: a turn encodes only the tokens its conversation has not encoded yet.

Each live conversation keeps the keys and values of the tokens it already ran through the model (its
last prompt and reply), stored by its run id. The next turn's prompt usually extends them (the same
conversation plus the agent's reply and the new observation), so only the new tokens are encoded; where
the prompt differs (the context window dropped old turns, or the reply re-tokenises differently), reuse
stops at the longest common prefix. A conversation without an entry of its own (a new episode, a new
Monte Carlo rollout from a state) takes the entry with the longest common prefix among the recent ones,
so the rollouts of one state share the state's encoded prefix.

`decode` is the batched loop that replaces `model.generate` for this: one forward over each row's new
tokens on top of its stored prefix (left-padded to a common length, padding masked), then one token per
row per step, with the same logits processors and stopping rules as `generate` (greedy over processed
scores; a finished row is padded). Replies are therefore the same as the full re-encoding path up to
the last float bits of the logits (tests/test_prefix_cache.py compares them token for token on real games).
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

RECENT = 64  # entries kept beyond the live ones, searched for a shared prefix


@dataclass
class Entry:
    ids: np.ndarray  # the tokens whose keys and values `kv` holds, in order
    kv: list[tuple]  # per layer: (keys, values), each [kv_heads, len(ids), head_dim]


def common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    """Length of the longest common prefix of two token arrays."""
    m = min(len(a), len(b))
    if m == 0:
        return 0
    diff = np.flatnonzero(a[:m] != b[:m])
    return int(diff[0]) if len(diff) else m


class PrefixStore:
    """Stored prefixes by conversation name, the most recently used last."""

    def __init__(self, recent: int = RECENT) -> None:
        self.entries: OrderedDict[str, Entry] = OrderedDict()
        self.recent = recent

    def lookup(self, name: str | None, prompt: Sequence[int]) -> tuple[Entry | None, int]:
        """(entry, tokens of `prompt` it holds): the conversation's own entry, else the recent entry that
        shares the longest prefix. At least the prompt's last token is always left to encode."""
        ids = np.asarray(prompt)
        own = self.entries.get(name) if name is not None else None
        candidates = [own] if own is not None else list(self.entries.values())
        best, length = None, 0
        for entry in candidates:
            n = min(common_prefix(entry.ids, ids), len(ids) - 1)
            if n > length:
                best, length = entry, n
        return best, length

    def put(self, name: str, entry: Entry) -> None:
        self.entries.pop(name, None)
        self.entries[name] = entry

    def keep(self, live: set[str]) -> None:
        """Drop all but the live entries and the `recent` most recently used others."""
        others = [name for name in self.entries if name not in live]
        for name in others[: max(0, len(others) - self.recent)]:
            del self.entries[name]


def decode(
    model,
    rows: Sequence[tuple[Entry | None, int, Sequence[int]]],
    *,
    max_new_tokens: int,
    pad_id: int,
    stop_ids: Sequence[int],
    processors: Sequence[Callable],
    stop_when: Callable | None = None,
) -> tuple[list[list[int]], list[Entry]]:
    """Generate a reply for each row (stored entry or None, tokens of it reused, the full prompt).

    `processors` and `stop_when` see the generated tokens alone (prompt width 0). Returns each row's
    reply tokens (up to and including the token that ended it) and its new entry (prompt plus the reply
    tokens the model has encoded).
    """
    import torch
    from transformers import DynamicCache

    device = next(model.parameters()).device
    argument = _cache_argument(model)
    batch = len(rows)
    reused = [n for _, n, _ in rows]
    suffixes = [list(prompt[n:]) for _, n, prompt in rows]
    past, width = max(reused), max(len(s) for s in suffixes)
    cache = DynamicCache(config=model.config)
    # every position this call can reach, reserved at once: a decode step then writes its keys and values in
    # place, where DynamicLayer copies the whole cache to append one position
    capacity = past + width + max_new_tokens
    cache.layers = [_reserved_layer()(capacity) for _ in cache.layers]
    if past:
        for layer, (keys, values) in zip(cache.layers, _padded_past(rows, past, device)):
            layer.update(keys, values)
    ids = torch.tensor([[pad_id] * (width - len(s)) + s for s in suffixes], device=device)
    mask = torch.tensor(
        [
            [0] * (past - n) + [1] * n + [0] * (width - len(s)) + [1] * len(s)
            for n, s in zip(reused, suffixes)
        ],
        device=device,
    )
    positions = torch.tensor(
        [[0] * (width - len(s)) + list(range(n, n + len(s))) for n, s in zip(reused, suffixes)], device=device
    )
    stops = torch.tensor(list(stop_ids), device=device)
    generated = torch.empty(batch, 0, dtype=torch.long, device=device)
    unfinished = torch.ones(batch, dtype=torch.bool, device=device)
    lengths = [0] * batch  # each row's reply: up to and including the token that ended it
    with torch.no_grad():
        logits = _last_logits(model, ids, mask, positions, cache, argument)
        next_position = positions[:, -1] + 1
        for step in range(max_new_tokens):
            running = unfinished.clone()
            scores = logits
            for processor in processors:
                scores = processor(generated, scores)
            token = torch.where(
                unfinished, scores.argmax(-1), torch.full_like(unfinished, pad_id, dtype=torch.long)
            )
            generated = torch.cat([generated, token[:, None]], dim=1)
            unfinished &= ~torch.isin(token, stops)
            if stop_when is not None:
                unfinished &= ~stop_when(generated, scores)
            for row in (running & ~unfinished).nonzero().flatten().tolist():
                lengths[row] = step + 1
            if not unfinished.any() or step == max_new_tokens - 1:
                break
            mask = torch.cat([mask, torch.ones(batch, 1, dtype=mask.dtype, device=device)], dim=1)
            logits = _last_logits(model, token[:, None], mask, next_position[:, None], cache, argument)
            next_position = next_position + 1
    for row in unfinished.nonzero().flatten().tolist():  # cut by the budget
        lengths[row] = generated.shape[1]
    replies = [generated[row, : lengths[row]].tolist() for row in range(batch)]
    fed = generated.shape[1] - 1  # the last token was chosen but never run through the model
    entries = [
        _entry(cache, row, past - n, n, width - len(s), prompt, reply[:fed], past + width)
        for row, ((_, n, prompt), s, reply) in enumerate(zip(rows, suffixes, replies))
    ]
    return replies, entries


@functools.cache
def _reserved_layer():
    """A transformers DynamicLayer whose keys and values are views of buffers of a fixed capacity."""
    from transformers.cache_utils import DynamicLayer

    class ReservedLayer(DynamicLayer):
        def __init__(self, capacity: int) -> None:
            super().__init__()
            self.capacity = capacity

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                batch, heads, _, dim = key_states.shape
                self.buffers = [
                    states.new_zeros(batch, heads, self.capacity, dim)
                    for states in (key_states, value_states)
                ]
                self.keys, self.values = (buffer[:, :, :0] for buffer in self.buffers)
                self.device, self.is_initialized = key_states.device, True
            start, end = self.keys.shape[-2], self.keys.shape[-2] + key_states.shape[-2]
            self.buffers[0][:, :, start:end] = key_states
            self.buffers[1][:, :, start:end] = value_states
            self.keys, self.values = (buffer[:, :, :end] for buffer in self.buffers)
            return self.keys, self.values

    return ReservedLayer


def _cache_argument(model) -> str:
    """transformers renamed `past_key_values` to `cache` (the old name is deprecated in 5.2x)."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _last_logits(model, ids, mask, positions, cache, name: str):
    """Float logits of each row's last position, the cache extended by `ids`."""
    out = model(
        input_ids=ids,
        attention_mask=mask,
        position_ids=positions,
        use_cache=True,
        logits_to_keep=1,
        **{name: cache},
    )
    return out.logits[:, -1, :].float()


def _padded_past(rows, past: int, device) -> list[tuple]:
    """Per layer, the rows' stored keys and values left-padded with zeros to `past` positions."""
    import torch

    template = next(entry for entry, n, _ in rows if entry is not None and n)
    layers = []
    for layer, (keys, values) in enumerate(template.kv):
        shape = (len(rows), keys.shape[0], past, keys.shape[2])
        k = torch.zeros(shape, dtype=keys.dtype, device=device)
        v = torch.zeros(shape, dtype=values.dtype, device=device)
        for row, (entry, n, _) in enumerate(rows):
            if n:
                k[row, :, past - n :] = entry.kv[layer][0][:, :n]
                v[row, :, past - n :] = entry.kv[layer][1][:, :n]
        layers.append((k, v))
    return layers


def _entry(cache, row: int, pad_past: int, n: int, pad_new: int, prompt, reply, past_width: int) -> Entry:
    """The row's real positions of the cache (stored prefix, new prompt tokens, encoded reply tokens)."""
    import torch

    positions = [*range(pad_past, pad_past + n), *range(pad_past + n + pad_new, past_width)]
    positions += range(past_width, past_width + len(reply))
    index = torch.tensor(positions, device=cache.layers[0].keys.device)
    kv = [
        (layer.keys[row].index_select(1, index), layer.values[row].index_select(1, index))
        for layer in cache.layers
    ]
    return Entry(np.asarray(list(prompt) + list(reply)), kv)
