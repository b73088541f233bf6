"""What every segmenter shares: a segmentation is a list of inclusive [start, end] action-index pairs.

Segments are contiguous and cover the trajectory's actions 0..n-1 exactly once, in order: for n = 7,
[[0, 2], [3, 5], [6, 6]]. An empty trajectory has no segments ([]). Equivalently, a segmentation is the set
of *cut points* (the actions a group ends after); `segments_from_cuts` turns one into the other, which is
how the uncertainty and semantic segmenters build theirs.
"""

from __future__ import annotations

from collections.abc import Iterable

from hpl.trajectory import agent_turns


class SegmentationError(ValueError):
    """A segmentation does not cover 0..n-1 contiguously; the message says where."""


def n_actions(trajectory: dict) -> int:
    """Number of agent actions in a trajectory record (agent turns after the opening "OK")."""
    return len(agent_turns(trajectory["conversations"]))


def segments_from_cuts(cuts: Iterable[int], n: int) -> list[list[int]]:
    """Segments closing after each cut index (cuts outside 0..n-2 are ignored: n-1 always closes)."""
    ends = sorted({c for c in cuts if 0 <= c < n - 1}) + ([n - 1] if n > 0 else [])
    segments, start = [], 0
    for end in ends:
        segments.append([start, end])
        start = end + 1
    return segments


def validate_segments(segments: list[list[int]], n: int) -> None:
    """Raise SegmentationError unless `segments` are int pairs covering 0..n-1 contiguously, in order."""
    expected_start = 0
    for i, pair in enumerate(segments):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(type(x) is int for x in pair)):
            raise SegmentationError(f"segment {i} is not a pair of ints: {pair!r}")
        start, end = pair
        if start != expected_start or end < start:
            raise SegmentationError(
                f"segment {i} {pair} should start at {expected_start} and not end before it"
            )
        expected_start = end + 1
    if expected_start != n:
        raise SegmentationError(f"segments cover 0..{expected_start - 1}, the trajectory has {n} actions")
