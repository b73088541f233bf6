"""InterCode-SQL timings: server start (cold: initialise + load the dump; warm: reuse the loaded data
directory), and episode throughput through the environment (reset, gold query, submit) plus snapshot/restore.

    python benchmarks/bench_intercode_sql.py [--data DIR] [--episodes N]

The data folder defaults to the pipeline's mirror setting ($HPL_DATA_MIRROR or data_mirror in config).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from hpl.envs.base import make_env
from hpl.intercode.actions import format_sql_action
from hpl.intercode.server import PrivateServer
from hpl.mirror import PROJECT_ROOT, benchmark_mirror


def default_data_dir() -> Path | None:
    config = PROJECT_ROOT / "config" / "config.yaml"
    configured = (yaml.safe_load(config.read_text()) or {}).get("data_mirror") if config.exists() else None
    return benchmark_mirror(configured, "intercode_sql")


def time_server_starts(data_dir: Path, folder: Path) -> dict[str, float]:
    dump = data_dir / "ic_spider_dbs.sql"
    timings = {}
    for label in ("cold", "warm"):
        began = time.perf_counter()
        server = PrivateServer(folder, dump).start()
        timings[f"start_{label}_s"] = round(time.perf_counter() - began, 3)
        began = time.perf_counter()
        server.stop()
        timings[f"stop_{label}_s"] = round(time.perf_counter() - began, 3)
    return timings


def time_episodes(data_dir: Path, folder: Path, episodes: int) -> dict[str, float]:
    with PrivateServer(folder, data_dir / "ic_spider_dbs.sql") as server:
        env = make_env("intercode_sql", data_dir=data_dir, server=server)
        tasks = env.task_ids("test")[:episodes]
        for task_id in tasks:  # warm the gold cache: a first episode per task also runs the gold query
            env.gold_rows(task_id)
        began = time.perf_counter()
        steps = 0
        for task_id in tasks:
            env.reset(task_id)
            env.step("SHOW TABLES")
            env.step(format_sql_action(env.task(task_id).gold))
            assert env.step("submit").reward == 1.0
            steps += 3
        elapsed = time.perf_counter() - began
        env.reset(tasks[0])
        env.step("SHOW TABLES")
        snapshot = env.snapshot()
        restores = []
        for _ in range(1000):
            t = time.perf_counter()
            env.restore(snapshot)
            restores.append(time.perf_counter() - t)
        env.close()
    return {
        "episodes": len(tasks),
        "episodes_per_s": round(len(tasks) / elapsed, 1),
        "steps_per_s": round(steps / elapsed, 1),
        "restore_median_us": round(statistics.median(restores) * 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--episodes", type=int, default=200)
    args = parser.parse_args()
    data_dir = args.data or default_data_dir()
    if data_dir is None:
        raise SystemExit("no intercode_sql data: pass --data or set $HPL_DATA_MIRROR")
    with tempfile.TemporaryDirectory(prefix="bench-intercode-") as tmp:
        results = time_server_starts(data_dir, Path(tmp) / "server")
        results.update(time_episodes(data_dir, Path(tmp) / "server", args.episodes))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
