"""Segmenters: split an expert trajectory's n actions into contiguous groups (REFERENCE.md section 5).

Every segmenter returns inclusive [start, end] pairs covering 0..n-1 in order (`base.validate_segments`).

| name          | module           | needs (params)                                                        |
|---------------|------------------|-----------------------------------------------------------------------|
| `fixed_n`     | `fixed.py`       | `N` (3): chunk size ceil(n / N)                                       |
| `fixed_k`     | `fixed.py`       | `K` (3): chunks of K                                                  |
| `uncertainty` | `uncertainty.py` | `threshold`; `entropies` (else the record's `action_entropies`)       |
| `semantic`    | `semantic.py`    | `client` (an `hpl.llm.ChatClient`); `fallback_k` (3), `max_tokens`    |

`segment_trajectory(name, record, **params)` is the one entry point the pipeline calls; the modules'
own functions give more (the semantic segmenter's status, the entropies themselves).
"""

from __future__ import annotations

from collections.abc import Callable

from hpl.segmenters.base import SegmentationError, n_actions, segments_from_cuts, validate_segments
from hpl.segmenters.fixed import fixed_k, fixed_n
from hpl.segmenters.semantic import SemanticResult, semantic_segments
from hpl.segmenters.uncertainty import uncertainty_segments

__all__ = [
    "MODULES",
    "SEGMENTERS",
    "SegmentationError",
    "SemanticResult",
    "n_actions",
    "segment_trajectory",
    "segments_from_cuts",
    "validate_segments",
]


def _fixed_n(record: dict, N: int = 3) -> list[list[int]]:
    return fixed_n(n_actions(record), N)


def _fixed_k(record: dict, K: int = 3) -> list[list[int]]:
    return fixed_k(n_actions(record), K)


def _uncertainty(record: dict, threshold: float, entropies: list[float] | None = None) -> list[list[int]]:
    entropies = entropies if entropies is not None else record.get("action_entropies")
    if entropies is None:
        raise ValueError(f"trajectory {record.get('id')!r}: no action entropies (pass entropies=...)")
    if len(entropies) != n_actions(record):
        raise ValueError(
            f"trajectory {record.get('id')!r}: {len(entropies)} entropies for {n_actions(record)} actions"
        )
    return uncertainty_segments(entropies, threshold)


def _semantic(record: dict, client, **options) -> list[list[int]]:
    return semantic_segments(record, client, **options).segments


SEGMENTERS: dict[str, Callable[..., list[list[int]]]] = {
    "fixed_n": _fixed_n,
    "fixed_k": _fixed_k,
    "uncertainty": _uncertainty,
    "semantic": _semantic,
}

#: each kind's own module (the table above), which only that kind's jobs depend on (hpl.fingerprint)
MODULES: dict[str, str] = {
    "fixed_n": "segmenters/fixed.py",
    "fixed_k": "segmenters/fixed.py",
    "uncertainty": "segmenters/uncertainty.py",
    "semantic": "segmenters/semantic.py",
}


def segment_trajectory(name: str, trajectory_record: dict, **params) -> list[list[int]]:
    """Segments of `trajectory_record` by segmenter `name` (see the table above for its params)."""
    try:
        segmenter = SEGMENTERS[name]
    except KeyError:
        raise ValueError(f"unknown segmenter {name!r}; known: {', '.join(SEGMENTERS)}") from None
    segments = segmenter(trajectory_record, **params)
    validate_segments(segments, n_actions(trajectory_record))
    return segments
