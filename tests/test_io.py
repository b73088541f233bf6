"""Atomic outputs and resumable record logs: a killed job loses at most the record in flight."""

import json
import subprocess
import sys
import textwrap

import pytest

from hpl.io import ResumableJsonl, atomic_write, finished_together, read_jsonl
from hpl.mirror import PROJECT_ROOT


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


def test_finished_together_keeps_partials_until_the_block_succeeds(tmp_path):
    with pytest.raises(SystemExit):
        with finished_together():
            first = ResumableJsonl(tmp_path / "a.jsonl")
            first.add({"id": 1})
            first.finish()
            raise SystemExit(143)  # SIGTERM (hpl.lifecycle) while the next output is in the works
    assert (tmp_path / "a.jsonl.partial").exists()
    with finished_together():
        again = ResumableJsonl(tmp_path / "a.jsonl")
        assert again.done(1)
        again.finish()
        assert (tmp_path / "a.jsonl.partial").exists()  # kept until the block ends
    assert not (tmp_path / "a.jsonl.partial").exists()


TWO_OUTPUTS_JOB = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path

    sys.path.insert(0, snakemake.params.root)
    from hpl.io import ResumableJsonl, finished_together
    from hpl.runlog import to_log

    to_log(snakemake)
    counter = Path("runs")
    run = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(run))
    with finished_together():
        first = ResumableJsonl(snakemake.output.first)
        for i in range(3):
            if not first.done(i):
                first.add({"id": i, "run": run})
        first.finish()
        second = ResumableJsonl(snakemake.output.second)
        for i in range(3):
            if not second.done(i):
                second.add({"id": i, "run": run})
            if run == 1 and i == 0:
                os.kill(os.getpid(), signal.SIGTERM)  # the job is stopped during the second output
        second.finish()
    """
)


def test_interrupted_two_output_job_keeps_its_finished_output_for_the_rerun(tmp_path):
    """A real Snakemake run: the job is SIGTERMed after its first output is complete. Snakemake deletes
    that output (every output of a failed job); the rerun resumes it from the kept partial file instead of
    computing it again, and redoes only the second output's missing units."""
    (tmp_path / "two.py").write_text(TWO_OUTPUTS_JOB)
    (tmp_path / "Snakefile").write_text(
        textwrap.dedent(
            f"""
            rule two:
                output:
                    first="first.jsonl",
                    second="second.jsonl",
                log:
                    "two.log",
                params:
                    root="{PROJECT_ROOT}",
                script:
                    "two.py"
            """
        )
    )
    command = [sys.executable, "-m", "snakemake", "--cores", "1", "--directory", str(tmp_path)]
    command += ["--snakefile", str(tmp_path / "Snakefile")]
    interrupted = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert interrupted.returncode != 0
    assert "received signal 15" in (tmp_path / "two.log").read_text()
    assert not (tmp_path / "first.jsonl").exists()  # what Snakemake does to a finished output
    assert len(read_jsonl(tmp_path / "first.jsonl.partial")) == 3

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert [r["run"] for r in read_jsonl(tmp_path / "first.jsonl")] == [1, 1, 1]  # not recomputed
    assert [r["run"] for r in read_jsonl(tmp_path / "second.jsonl")] == [1, 2, 2]  # only the rest
    assert not list(tmp_path.glob("*.partial"))
