"""Conversations as token ids, with a loss mask over the agent's turns.

All models (the tiny one and Qwen2.5) see the ChatML layout Qwen2.5 was trained on:

    <|im_start|>user\\n{human turn}<|im_end|>\\n<|im_start|>assistant\\n{gpt turn}<|im_end|>\\n ...

Each segment is tokenized on its own and the ids are concatenated, so the boundary between what the agent
wrote and what the environment wrote is exact: the labels cover the agent's text and its closing
`<|im_end|>` (the model must learn to stop), nothing else. Observations inside multi-turn chosen/rejected
continuations are masked the same way. Which turns a training sequence or a prompt holds is decided by
the shared context rule (`hpl.context`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
ROLE = {"human": "user", "gpt": "assistant"}
IGNORE_INDEX = -100


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX where no loss

    def __len__(self) -> int:
        return len(self.input_ids)


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def encode_turns(tokenizer, turns: Sequence[dict], train_on_agent: bool = True) -> Encoded:
    """Token ids of `turns`; labels on gpt turns' content + end marker when `train_on_agent`."""
    ids: list[int] = []
    labels: list[int] = []
    for turn in turns:
        head = _ids(tokenizer, f"{IM_START}{ROLE[turn['from']]}\n")
        body = _ids(tokenizer, turn["value"] + IM_END)
        tail = _ids(tokenizer, "\n")
        learn = train_on_agent and turn["from"] == "gpt"
        ids += head + body + tail
        labels += [IGNORE_INDEX] * len(head) + (body if learn else [IGNORE_INDEX] * len(body))
        labels += [IGNORE_INDEX] * len(tail)
    return Encoded(ids, labels)


def generation_prompt(tokenizer, turns: Sequence[dict]) -> list[int]:
    """Ids of a conversation ending with a human turn, followed by the opening of the agent's reply."""
    return encode_turns(tokenizer, turns, train_on_agent=False).input_ids + _ids(
        tokenizer, f"{IM_START}assistant\n"
    )
