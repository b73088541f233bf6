"""Files written so that a killed job loses at most the record in flight.

- `atomic_write`: whole files appear at once (temp file in the same folder + rename).
- `ResumableJsonl`: long jobs append one record per finished unit (an episode, a rollout) to a `.partial`
  file, flushed and fsynced; a rerun reads the finished ids back and skips them; `finish()` writes the
  final output from it, so the final file exists only when every unit is done.
- `finished_together()`: a job with several outputs keeps each finished output's partial file until the
  job's last output is written. Snakemake deletes *every* output of an interrupted or failed job, those
  finished long before included; the partial file is not an output, so it survives and the rerun skips
  the finished part (seen: `groups/<seg>_negatives.jsonl`, `explore/step_continuations.jsonl` redone).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[Any]:
    """Open a temp file beside `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_write(path) as handle:
        json.dump(obj, handle, indent=2, sort_keys=False)
        handle.write("\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path) as handle:
        return json.load(handle)


def write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> int:
    count = 0
    with atomic_write(path) as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
            count += 1
    return count


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    records = []
    with open(path) as handle:
        for lineno, line in enumerate(handle, 1):
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
    return records


#: partial files whose final output is written but which are kept until the job's block ends
_kept_partials: list[Path] | None = None


@contextmanager
def finished_together() -> Iterator[None]:
    """Keep the partial file of every `ResumableJsonl` finished in the block until the block ends without
    an exception (SystemExit from SIGTERM included), then drop them all. Put the job's last output inside."""
    global _kept_partials
    outer, _kept_partials = _kept_partials, []
    try:
        yield
        for partial in _kept_partials:
            partial.unlink(missing_ok=True)
    finally:
        _kept_partials = outer


class ResumableJsonl:
    """Append-only record log keyed by `key`, finished into `path` by `finish()`."""

    def __init__(self, path: str | os.PathLike, key: str = "id") -> None:
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.key = key
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.records: dict[str, dict] = {}
        if self.partial.exists():
            self._load()
        self._handle = open(self.partial, "a")

    def _load(self) -> None:
        with open(self.partial) as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    break  # a line cut by a kill: everything after it is lost anyway
                self.records[str(record[self.key])] = record
        # rewrite without the torn tail and without duplicates
        with atomic_write(self.partial) as handle:
            for record in self.records.values():
                handle.write(json.dumps(record) + "\n")

    def done(self, key: Any) -> bool:
        return str(key) in self.records

    def add(self, record: dict) -> None:
        key = str(record[self.key])
        if key in self.records:
            return
        self.records[key] = record
        self._handle.write(json.dumps(record) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def finish(self, order: Iterable[Any] | None = None) -> list[dict]:
        """Write the final file (in `order` of keys when given) and drop the partial file (inside
        `finished_together()`: when the block ends)."""
        self._handle.close()
        if order is None:
            records = list(self.records.values())
        else:
            records = [self.records[str(k)] for k in order if str(k) in self.records]
        write_jsonl(self.path, records)
        if _kept_partials is not None:
            _kept_partials.append(self.partial)
        else:
            self.partial.unlink(missing_ok=True)
        return records

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.close()
