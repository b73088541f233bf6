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
scores). Replies are therefore the same as the full re-encoding path up to the last float bits of the
logits (tests/test_prefix_cache.py compares them token for token on real games).

With `lookahead`, a step also feeds draft tokens (prompt-lookup decoding: what followed the latest earlier
occurrence of the row's last tokens in its own conversation, which an agent's replies copy a lot). Each
row checks its drafts against its own choices, in order, and keeps those confirmed; the slots of the
others are masked from then on. A reply is still chosen token by token from the logits after the tokens
before it, so it is the same, in fewer forwards. Why a small lookahead: on CPU a forward's attention
costs grow with the tokens it feeds (docs/performance.md).
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


def prompt_lookup(context: Sequence[int], size: int, ngram: int = 3) -> list[int]:
    """Up to `size` draft tokens: what followed the latest earlier occurrence of the context's last n tokens
    (n from `ngram` down to 1), or [] without one. An agent's reply copies its conversation (object and
    receptacle names, the previous turn's thought and action), so the draft is often what the model writes."""
    ids = np.asarray(context)
    for n in range(min(ngram, len(ids) - 1), 0, -1):
        windows = np.lib.stride_tricks.sliding_window_view(ids[:-1], n)  # never the tail itself
        hits = np.flatnonzero((windows == ids[-n:]).all(axis=1))
        if len(hits):
            start = int(hits[-1]) + n
            return ids[start : start + size].tolist()
    return []


def decode(
    model,
    rows: Sequence[tuple[Entry | None, int, Sequence[int]]],
    *,
    max_new_tokens: int,
    pad_id: int,
    stop_ids: Sequence[int],
    processors: Sequence[Sequence[Callable]],
    stop_when: Callable | None = None,
    lookahead: int = 0,
    ragged: bool = True,
) -> tuple[list[list[int]], list[Entry]]:
    """Generate a reply for each row (stored entry or None, tokens of it reused, the full prompt).

    `processors[row]` and `stop_when` see that row alone and its generated tokens alone ([1, n] ids,
    [1, vocab] scores). With `lookahead`, each forward also feeds up to that many draft tokens per row
    (`prompt_lookup`); a row keeps the drafts its own choices confirm, each chosen from the logits after
    the confirmed tokens before it, so the reply is the one token-by-token decoding writes (up to the logits'
    last float bits), in fewer forwards. With `ragged`, rows whose numbers of new tokens are far apart (a
    new episode's whole prompt beside turns that add an observation) are encoded in separate forwards
    (`prefill_groups`), since one forward pads every row to the longest. Returns each row's reply tokens
    (up to and including the token that ended it) and its new entry (prompt plus the reply tokens the
    model has encoded: all but the last).
    """
    import torch

    device = next(model.parameters()).device
    argument = _cache_argument(model)
    batch = len(rows)
    reused = [n for _, n, _ in rows]
    suffixes = [list(prompt[n:]) for _, n, prompt in rows]
    groups = prefill_groups(reused, [len(s) for s in suffixes]) if ragged else [list(range(batch))]
    if len(groups) == 1:  # one forward over every row's new tokens, written where the decode steps follow
        past, width = max(reused), max(len(s) for s in suffixes)
        # every slot this call can reach, reserved at once: a forward then writes its keys and values in
        # place, where DynamicLayer copies the whole cache to append; a forward feeds <= 1 + lookahead slots
        capacity = past + width + max_new_tokens * (1 + lookahead)
        cache, logits, slots = _prefill(model, rows, suffixes, capacity, pad_id, argument)
        used = past + width  # slots written so far
    else:  # rows far apart in new tokens: each group its own forward, then one cache, right-aligned
        totals = [n + len(s) for n, s in zip(reused, suffixes)]
        used = max(totals)
        capacity = used + max_new_tokens * (1 + lookahead)
        cache, logits = _prefill_ragged(model, rows, suffixes, groups, capacity, used, pad_id, argument)
        slots = [list(range(used - total, used)) for total in totals]
    mask = torch.zeros(batch, capacity, dtype=torch.long, device=device)
    for row in range(batch):
        mask[row, slots[row]] = 1
    stops = set(stop_ids)
    prompts = [np.asarray(prompt, dtype=np.int64) for _, _, prompt in rows]  # prompt lookup's context
    replies: list[list[int]] = [[] for _ in range(batch)]
    live = list(range(batch))
    drafts: list[list[int]] = [[] for _ in range(batch)]
    next_position = [n + len(s) for n, s in zip(reused, suffixes)]

    def choose(row: int, logits) -> bool:
        """Append the row's next token from `logits`; True when that ends the reply."""
        generated = torch.tensor([replies[row]], dtype=torch.long, device=device)
        scores = logits[None]
        for processor in processors[row]:
            scores = processor(generated, scores)
        token = int(scores.argmax(-1))
        replies[row].append(token)
        if token in stops or len(replies[row]) == max_new_tokens:
            return True
        generated = torch.tensor([replies[row]], dtype=torch.long, device=device)
        return stop_when is not None and bool(stop_when(generated, scores)[0])

    with torch.no_grad():
        fed_from = None  # first slot of the last forward's fed tokens
        while live:
            still = []
            for row in live:
                confirmed = 0  # draft tokens this forward fed that the row's own choices confirmed
                while True:
                    ended = choose(row, logits[row, confirmed])
                    if ended or confirmed == len(drafts[row]) or replies[row][-1] != drafts[row][confirmed]:
                        break
                    confirmed += 1
                if fed_from is not None:  # the forward's pending token and the confirmed drafts are kept
                    kept = range(fed_from, fed_from + 1 + confirmed)
                    slots[row] += kept
                    next_position[row] += 1 + confirmed
                    mask[row, fed_from + 1 + confirmed : used] = 0
                if not ended:
                    still.append(row)
            live = still
            if not live:
                break
            feeds = [[pad_id]] * batch
            for row in live:
                room = min(lookahead, max_new_tokens - len(replies[row]) - 1)
                drafts[row] = (  # the context is built only for a lookup (lookahead 0: the default path)
                    prompt_lookup(np.concatenate([prompts[row], replies[row]]), room) if room > 0 else []
                )
                feeds[row] = [replies[row][-1], *drafts[row]]
            step = max(len(feed) for feed in feeds)
            ids = torch.tensor([feed + [pad_id] * (step - len(feed)) for feed in feeds], device=device)
            for row in live:
                mask[row, used : used + len(feeds[row])] = 1
            positions = torch.tensor(
                [[next_position[row] + i for i in range(step)] for row in range(batch)], device=device
            )
            fed_from, used = used, used + step
            logits = _logits(model, ids, mask[:, :used], positions, cache, argument, keep=step)
    entries = [
        _entry(cache, row, slots[row], list(prompt) + reply[:-1])
        for row, ((_, _, prompt), reply) in enumerate(zip(rows, replies))
    ]
    return replies, entries


#: a forward's fixed cost, in query x key pairs of attention (~5 ms on 2 CPU cores), for `prefill_groups`
FORWARD_COST = 400_000


def prefill_groups(
    reused: Sequence[int], widths: Sequence[int], overhead: int = FORWARD_COST
) -> list[list[int]]:
    """Rows in groups, each encoded by one forward: contiguous runs of the rows sorted by new tokens
    (`widths`), chosen to minimise the padded attention work (rows x longest new tokens x keys) plus
    `overhead` per forward. One group (today's single forward) unless splitting saves more than a forward."""
    order = sorted(range(len(widths)), key=lambda row: widths[row])

    def cost(i: int, j: int) -> int:  # rows order[i:j] in one forward
        members = order[i:j]
        width, past = widths[members[-1]], max(reused[row] for row in members)
        return len(members) * width * (past + width) + overhead

    best, cut = [0] + [None] * len(order), [0] * (len(order) + 1)
    for j in range(1, len(order) + 1):
        best[j], cut[j] = min((best[i] + cost(i, j), i) for i in range(j))
    if best[-1] + overhead >= cost(0, len(order)):  # merging the groups back costs a copy: keep one forward
        return [list(range(len(widths)))]
    groups, j = [], len(order)
    while j:
        groups.append(sorted(order[cut[j] : j]))
        j = cut[j]
    return groups[::-1]


def _prefill(model, rows, suffixes, capacity: int | None, pad_id: int, argument: str):
    """(cache, logits, slots): a reserved cache of `capacity` slots (None: just enough) holding `rows`' stored
    prefixes (left-padded to the longest), then their new tokens (left-padded to the longest) encoded by one
    forward; the logits of each row's last position; per row, the slots holding its real tokens, in order."""
    import torch
    from transformers import DynamicCache

    device = next(model.parameters()).device
    reused = [n for _, n, _ in rows]
    past, width = max(reused), max(len(s) for s in suffixes)
    cache = DynamicCache(config=model.config)
    cache.layers = [_reserved_layer()(capacity or past + width) for _ in cache.layers]
    if past:
        _fill_past(cache.layers, rows, past)
    ids = torch.tensor([[pad_id] * (width - len(s)) + s for s in suffixes], device=device)
    slots = [
        [*range(past - n, past), *range(past + width - len(s), past + width)]
        for n, s in zip(reused, suffixes)
    ]
    mask = torch.zeros(len(rows), past + width, dtype=torch.long, device=device)
    for row, real in enumerate(slots):
        mask[row, real] = 1
    positions = torch.tensor(
        [[0] * (width - len(s)) + list(range(n, n + len(s))) for n, s in zip(reused, suffixes)], device=device
    )
    with torch.no_grad():
        return cache, _logits(model, ids, mask, positions, cache, argument, keep=1), slots


def _prefill_ragged(model, rows, suffixes, groups, capacity: int, used: int, pad_id: int, argument: str):
    """Each group's rows encoded by their own forward (`_prefill`), then copied into one reserved cache in
    which every row's tokens end at slot `used` (zeros before them, masked). Returns (cache, logits)."""
    import torch
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    cache.layers = [_reserved_layer()(capacity) for _ in cache.layers]
    logits = [None] * len(rows)
    for group in groups:
        part, part_logits, part_slots = _prefill(
            model, [rows[r] for r in group], [suffixes[r] for r in group], None, pad_id, argument
        )
        reals = [torch.tensor(slots, device=part_logits.device) for slots in part_slots]  # once per group
        for layer, small in zip(cache.layers, part.layers):
            if not layer.is_initialized:
                layer.reserve(small.keys[0], len(rows))
            for big_buffer, small_buffer in zip(layer.buffers, small.buffers):
                for i, row in enumerate(group):
                    real = reals[i]
                    big_buffer[row, :, : used - len(real)] = 0
                    big_buffer[row, :, used - len(real) : used] = small_buffer[i].index_select(1, real)
        for i, row in enumerate(group):
            logits[row] = part_logits[i]
    for layer in cache.layers:
        layer.keys, layer.values = (buffer[:, :, :used] for buffer in layer.buffers)
    return cache, torch.stack(logits)


@functools.cache
def _reserved_layer():
    """A transformers DynamicLayer whose keys and values are views of buffers of a fixed capacity."""
    from transformers.cache_utils import DynamicLayer

    class ReservedLayer(DynamicLayer):
        def __init__(self, capacity: int) -> None:
            super().__init__()
            self.capacity = capacity

        def reserve(self, like, batch: int) -> None:
            """Buffers for `batch` rows shaped and typed like `like` ([heads, length, dim]), uninitialised:
            a slot is always written (a real token's or a pad's keys and values) before a forward reads it."""
            heads, _, dim = like.shape
            self.buffers = [like.new_empty(batch, heads, self.capacity, dim) for _ in range(2)]
            self.keys, self.values = (buffer[:, :, :0] for buffer in self.buffers)
            self.device, self.is_initialized = like.device, True

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.reserve(key_states[0], key_states.shape[0])
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


def _logits(model, ids, mask, positions, cache, name: str, keep: int):
    """Float logits of each row's last `keep` positions, the cache extended by `ids`."""
    out = model(
        input_ids=ids,
        attention_mask=mask,
        position_ids=positions,
        use_cache=True,
        logits_to_keep=keep,
        **{name: cache},
    )
    return out.logits[:, -keep:, :].float()


def _fill_past(layers, rows, past: int) -> None:
    """Write the rows' stored keys and values into the reserved layers, each row left-padded with zeros to
    `past` slots (masked; zeros, not the buffers' leftover bytes, which could be NaN even under a mask)."""
    template = next(entry for entry, n, _ in rows if entry is not None and n)
    for index, layer in enumerate(layers):
        layer.reserve(template.kv[index][0], len(rows))
        for part, buffer in enumerate(layer.buffers):
            for row, (entry, n, _) in enumerate(rows):
                buffer[row, :, : past - n] = 0
                if n:
                    buffer[row, :, past - n : past] = entry.kv[index][part][:, :n]
        layer.keys, layer.values = (buffer[:, :, :past] for buffer in layer.buffers)


def _entry(cache, row: int, slots: list[int], ids: list[int]) -> Entry:
    """The row's entry: the keys and values of its real slots (stored prefix, new prompt tokens, encoded
    reply tokens), in order."""
    import torch

    assert len(slots) == len(ids), (len(slots), len(ids))
    index = torch.tensor(slots, device=cache.layers[0].keys.device)
    kv = [
        (layer.keys[row].index_select(1, index), layer.values[row].index_select(1, index))
        for layer in cache.layers
    ]
    return Entry(np.asarray(ids), kv)
