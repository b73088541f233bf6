"""Atomic outputs and resumable record logs: a killed job loses at most the record in flight."""

import json

import pytest

from hpl.io import ResumableJsonl, atomic_write, read_jsonl


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as handle:
            handle.write("new")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_resumable_log_skips_done_and_survives_torn_line(tmp_path):
    out = tmp_path / "eval.jsonl"
    log = ResumableJsonl(out)
    log.add({"id": "a", "reward": 1})
    log.add({"id": "b", "reward": 0})
    log.close()
    with open(log.partial, "a") as handle:  # a kill in the middle of writing "c"
        handle.write('{"id": "c", "rew')
    assert not out.exists()

    again = ResumableJsonl(out)
    assert again.done("a") and again.done("b") and not again.done("c")
    again.add({"id": "a", "reward": 5})  # a duplicate is ignored
    again.add({"id": "c", "reward": 1})
    records = again.finish(order=["c", "b", "a"])
    assert [r["id"] for r in records] == ["c", "b", "a"]
    assert read_jsonl(out) == records and records[2]["reward"] == 1
    assert not again.partial.exists()


def test_read_jsonl_names_bad_line(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"id": 1}) + "\n{oops\n")
    with pytest.raises(ValueError, match=r"x.jsonl:2"):
        read_jsonl(path)
