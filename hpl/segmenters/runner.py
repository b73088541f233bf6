"""Segmenting a set of expert trajectories with one configured segmenter (what the `segment` rule runs).

`segment_experts` returns one row per trajectory ({"id", "n_actions", "segments", "status", ...}) and the
LLM usage (zeros for segmenters that call no LLM). The uncertainty threshold is the configured percentile
of the action entropies of *all* expert trajectories given (the training set), as in the paper, while only
the `subset` is segmented.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from hpl.llm import ChatClient, LLMUsage
from hpl.segmenters import n_actions, segment_trajectory
from hpl.segmenters.semantic import semantic_segments
from hpl.segmenters.uncertainty import action_entropies_batch, entropy_threshold

log = logging.getLogger(__name__)


@contextlib.contextmanager
def llm_client(settings: dict, server_log: str | None = None) -> Iterator[ChatClient]:
    """A client for the configured endpoint; with no base_url, a local SmolLM2 server for the block."""
    if settings.get("base_url"):
        yield ChatClient(settings["base_url"], settings.get("model"), cache_dir=settings["cache"])
        return
    from hpl.llm_server import smollm2_server

    with smollm2_server(log_path=server_log) as server:
        log.info("local LLM server %s ready in %.1f s", server.base_url, server.start_seconds or 0.0)
        yield ChatClient(server.base_url, server.model, cache_dir=settings["cache"])


def segment_experts(
    spec: dict,
    experts: list[dict],
    subset: list[dict],
    *,
    ref_path: str | None = None,
    llm: dict | None = None,
    max_length: int | None = 2048,
    server_log: str | None = None,
) -> tuple[list[dict], dict]:
    kind = spec["kind"]
    if kind in ("fixed_n", "fixed_k"):
        params = {"N": spec["N"]} if kind == "fixed_n" else {"K": spec["K"]}
        rows = [_row(r, segment_trajectory(kind, r, **params)) for r in subset]
        return rows, LLMUsage().as_dict()
    if kind == "uncertainty":
        return _uncertainty(spec, experts, subset, ref_path, max_length), LLMUsage().as_dict()
    if kind == "semantic":
        with llm_client(llm, server_log) as client:
            rows = []
            for record in subset:
                result = semantic_segments(record, client, fallback_k=spec["fallback_k"])
                rows.append(_row(record, result.segments, status=result.status, reason=result.reason))
            return rows, client.usage.as_dict()
    raise ValueError(f"unknown segmenter kind {kind!r}")


def _uncertainty(spec: dict, experts: list[dict], subset: list[dict], ref_path: str, max_length: int | None):
    from hpl.context import read_rule
    from hpl.models import load_model

    model, tokenizer = load_model(ref_path)
    if max_length is None:  # training.dpo.max_length null: pi_ref's longest sequence (window + reply)
        max_length = read_rule(ref_path).sequence
    entropies = dict(
        zip([e["id"] for e in experts], action_entropies_batch(model, tokenizer, experts, max_length))
    )
    threshold = entropy_threshold([h for values in entropies.values() for h in values], spec["percentile"])
    log.info(
        "entropy threshold (%sth percentile over %d trajectories): %.4f",
        spec["percentile"],
        len(experts),
        threshold,
    )
    return [
        _row(
            r,
            segment_trajectory("uncertainty", r, threshold=threshold, entropies=entropies[r["id"]]),
            entropies=entropies[r["id"]],
            threshold=threshold,
        )
        for r in subset
    ]


def _row(record: dict, segments: list[list[int]], status: str = "ok", **extra) -> dict:
    return {
        "id": record["id"],
        "n_actions": n_actions(record),
        "segments": segments,
        "status": status,
        **extra,
    }
