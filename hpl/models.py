"""Models: the embedded tiny model built from scratch, and any Hugging Face checkpoint.

The tiny model needs no hub access: a byte-level BPE tokenizer is trained on the expert corpus, and a
small Qwen2-architecture causal LM is initialised from a config. It is saved as an ordinary checkpoint
folder, so every later stage loads it exactly like Qwen2.5 (`AutoModelForCausalLM.from_pretrained`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hpl.chat import IM_END, IM_START

PAD = "<|endoftext|>"
SPECIAL_TOKENS = [PAD, IM_START, IM_END]
#: tokenizer_config.json key that marks a tokenizer trained here (`load_tokenizer` keeps it as trained)
TRAINED_HERE = "hpl_trained_tokenizer"


class ModelLoadError(RuntimeError):
    """A checkpoint could not be loaded; the message names the path."""


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    """A byte-level BPE tokenizer (like Qwen's) trained on `texts`, with the ChatML special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD,
        eos_token=IM_END,
        bos_token=None,
        unk_token=None,
        **{TRAINED_HERE: True},  # saved in tokenizer_config.json, and again by every checkpoint after
    )


def load_tokenizer(path: str | os.PathLike):
    """The tokenizer of a checkpoint. One trained here loads exactly as trained: beside a Qwen2 config,
    AutoTokenizer would build a Qwen2 tokenizer, whose own pre-tokenizer (single digits, ...) splits text
    differently from the merges learned here (longer sequences, and tokens never seen in training)."""
    import json

    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    config = Path(path) / "tokenizer_config.json"
    if config.is_file() and json.loads(config.read_text()).get(TRAINED_HERE):
        return PreTrainedTokenizerFast.from_pretrained(str(path))
    return AutoTokenizer.from_pretrained(str(path))


def conversation_texts(records: Iterable[dict]) -> Iterable[str]:
    """Every turn of every trajectory, the corpus the tiny tokenizer is trained on."""
    for record in records:
        for turn in record["conversations"]:
            yield turn["value"]


def build_tiny_model(
    records: list[dict],
    out_dir: str | os.PathLike,
    spec: dict[str, Any],
    seed: int = 0,
    generation: dict | None = None,
):
    """Train the tokenizer on `records`, initialise a Qwen2 LM of `spec` sizes, save both to `out_dir`.

    `max_positions: null` sizes the context to the data: the longest expert conversation plus the reply
    budget (`hpl.context.required_positions`, `generation` the config's block), so whole conversations
    train and generate without a window. Tokens are counted with the tokenizer as later jobs load it from
    the folder (`load_tokenizer`: the same as trained).
    """
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from hpl.context import derive_rule, required_positions, write_rule

    tokenizer = train_tokenizer(conversation_texts(records), spec["vocab_size"])
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=spec["hidden_size"],
        intermediate_size=spec["intermediate_size"],
        num_hidden_layers=spec["num_layers"],
        num_attention_heads=spec["num_heads"],
        num_key_value_heads=spec.get("num_kv_heads", spec["num_heads"]),
        max_position_embeddings=spec["max_positions"] or 128,  # null: set below, once tokens are counted
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)  # the weights do not depend on the context length (RoPE)
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    tokenizer = load_tokenizer(out_dir)
    if not spec["max_positions"]:
        model.config.max_position_embeddings = required_positions(tokenizer, records, generation or {})
        model.config.save_pretrained(str(out_dir))
    # the untrained model generates (a zero-shot row) under the rule its SFT would derive
    rule = derive_rule(tokenizer, records, generation or {}, model.config.max_position_embeddings)
    write_rule(out_dir, rule)
    return model, tokenizer


def load_model(path: str | os.PathLike, dtype: str = "float32"):
    """(model, tokenizer) from a checkpoint folder or hub id; an error naming `path` if it fails."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        tokenizer = load_tokenizer(path)
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=getattr(torch, dtype))
    except Exception as err:  # transformers raises many kinds; the path is what the user needs
        raise ModelLoadError(f"cannot load model checkpoint {path}: {err}") from err
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def stop_token_ids(tokenizer) -> list[int]:
    """Token ids that end an agent turn: <|im_end|> and the tokenizer's own eos."""
    ids = {tokenizer.convert_tokens_to_ids(IM_END), tokenizer.eos_token_id}
    return sorted(i for i in ids if i is not None and i >= 0)


def parameter_count(model) -> int:
    return sum(p.numel() for p in model.parameters())
