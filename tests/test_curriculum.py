"""The dual-layer curriculum: bucket edges, phase membership of every variant, bucket counts."""

import pytest

from hpl.curriculum import (
    VARIANTS,
    annotate,
    bucket,
    bucket_counts,
    buckets_in_phase,
    format_grid,
    pairs_for_phase,
    phase_of,
)

ALL = {(ll, dl) for ll in (1, 2, 3) for dl in (1, 2, 3)}


@pytest.mark.parametrize(
    "length, level",
    [
        (1, 1),
        (2, 1),
        (3, 1),
        (4, 2),
        (5, 2),
        (6, 2),
        (7, 3),
        (20, 3),
    ],  # at, just below, just above t1=3, t2=6
)
def test_length_level_edges_alfworld(length, level):
    assert bucket(length, 0.9)[0] == level


@pytest.mark.parametrize("length, level", [(1, 1), (2, 1), (3, 2), (4, 2), (5, 3)])
def test_length_level_edges_webshop_thresholds(length, level):
    assert bucket(length, 0.9, length_thresholds=(2, 4))[0] == level


@pytest.mark.parametrize(
    "gap, level",
    [
        (1.0, 1), (0.71, 1), (0.7, 1),  # at and above d1 = 0.7: easy
        (0.69, 2), (0.41, 2), (0.4, 2),  # below d1, at and above d2 = 0.4
        (0.39, 3), (0.31, 3), (0.0, 3),  # below d2: hard
    ],
)  # fmt: skip
def test_difficulty_level_edges(gap, level):
    assert bucket(2, gap)[1] == level


def test_gap_from_rollout_means_lands_in_its_exact_bucket():
    # 3/5 - 1/5 is 0.39999999999999997 in floating point; 4/5 - 1/10 is 0.7000000000000001
    assert bucket(1, 3 / 5 - 1 / 5)[1] == 2
    assert bucket(1, 0.8 - 0.1)[1] == 1
    assert bucket(1, 0.6 - 0.3)[1] == 3  # 0.3 really is below 0.4


def test_thresholds_must_be_ordered():
    with pytest.raises(ValueError):
        bucket(2, 0.5, length_thresholds=(6, 3))
    with pytest.raises(ValueError):
        bucket(2, 0.5, difficulty_thresholds=(0.4, 0.7))


def test_full_schedule_follows_the_paper():
    assert set(buckets_in_phase(1, "full")) == {(1, 1)}
    assert set(buckets_in_phase(2, "full")) == {(1, 1), (1, 2), (2, 1)}
    assert set(buckets_in_phase(3, "full")) == ALL


def test_static_sees_everything_in_every_phase():
    for phase in (1, 2, 3):
        assert set(buckets_in_phase(phase, "static")) == ALL


def test_single_axis_variants():
    for phase in (1, 2, 3):
        assert set(buckets_in_phase(phase, "length")) == {(ll, dl) for ll, dl in ALL if ll <= phase}
        assert set(buckets_in_phase(phase, "difficulty")) == {(ll, dl) for ll, dl in ALL if dl <= phase}


@pytest.mark.parametrize("variant", VARIANTS)
def test_phases_are_cumulative_and_end_with_everything(variant):
    sets = [set(buckets_in_phase(p, variant)) for p in (1, 2, 3)]
    assert sets[0] and sets[0] <= sets[1] <= sets[2] == ALL
    for b in ALL:
        assert b in buckets_in_phase(phase_of(b, variant), variant)


def test_unknown_variant_phase_or_level_is_an_error():
    with pytest.raises(ValueError, match="variant"):
        phase_of((1, 1), "reverse")
    with pytest.raises(ValueError):
        phase_of((0, 1), "full")
    with pytest.raises(ValueError):
        pairs_for_phase([], 4)


def _pairs():
    # (group_length, difficulty) covering every bucket, two pairs in L1D1
    specs = [
        (1, 0.9),
        (3, 0.7),
        (2, 0.5),
        (3, 0.35),
        (5, 0.8),
        (6, 0.4),
        (4, 0.31),
        (7, 1.0),
        (9, 0.6),
        (12, 0.32),
    ]
    return [{"id": str(i), "group_length": n, "difficulty": gap} for i, (n, gap) in enumerate(specs)]


def test_pairs_for_phase_per_variant():
    pairs = _pairs()
    ids = lambda phase, variant: [p["id"] for p in pairs_for_phase(pairs, phase, variant)]  # noqa: E731
    assert ids(1, "full") == ["0", "1"]
    assert ids(2, "full") == ["0", "1", "2", "4"]
    assert ids(3, "full") == [p["id"] for p in pairs]
    assert ids(1, "static") == ids(2, "static") == ids(3, "static") == [p["id"] for p in pairs]
    assert ids(1, "length") == ["0", "1", "2", "3"]
    assert ids(2, "length") == ["0", "1", "2", "3", "4", "5", "6"]
    assert ids(1, "difficulty") == ["0", "1", "4", "7"]
    assert ids(2, "difficulty") == ["0", "1", "2", "4", "5", "7", "8"]


def test_pairs_for_phase_uses_the_given_thresholds():
    pairs = [{"id": "a", "group_length": 3, "difficulty": 0.9}]
    assert pairs_for_phase(pairs, 1, "full", length_thresholds=(3, 6)) == pairs
    assert pairs_for_phase(pairs, 1, "full", length_thresholds=(2, 4)) == []


def test_bucket_counts_grid_and_text():
    counts = bucket_counts(_pairs())
    assert counts == {
        "L1": {"D1": 2, "D2": 1, "D3": 1},
        "L2": {"D1": 1, "D2": 1, "D3": 1},
        "L3": {"D1": 1, "D2": 1, "D3": 1},
    }
    text = format_grid(counts)
    lines = text.splitlines()
    assert lines[0].split()[:2] == ["D1", "(easy)"]
    assert lines[1].split()[:3] == ["L1", "2", "p1"]
    assert lines[-1].split() == ["total", "4", "3", "3", "10"]
    assert "p" not in format_grid(counts, variant=None).splitlines()[1]


def test_annotate_adds_levels_and_phase_per_variant():
    first = annotate(_pairs())[2]  # length 2, gap 0.5: L1D2
    assert (first["length_level"], first["difficulty_level"]) == (1, 2)
    assert first["phase"] == {"full": 2, "static": 1, "length": 1, "difficulty": 2}
