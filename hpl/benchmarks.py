"""What the pipeline needs to know about each benchmark, in one place.

A `Benchmark` says which splits are evaluated, how its data is prepared (mirror or official source), how
its environment is built from the config, and how expert trajectories are collected. The rules and
scripts only ever go through this table, so adding a benchmark means adding one entry here.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpl.envs.base import Environment, make_env
from hpl.mirror import benchmark_mirror


@dataclass(frozen=True)
class Benchmark:
    name: str
    eval_splits: tuple[str, ...]
    train_split: str
    prepare: Callable[[Path, Path | None], dict]  # (dest, mirror folder) -> manifest
    # (data_dir, task_ids, settings, on_record, skip, workers) -> data card; records go to on_record as
    # they finish; `workers` processes may play them (the rule's threads: a speed setting, never a param)
    expert: Callable[..., dict]
    env_extras: Callable[[Path], dict] = lambda data_dir: {}
    # environment options read from the benchmark's config section (InterCode-SQL: reward, split, ...)
    env_options: Callable[[dict], dict] = lambda settings: {}
    # job-scoped resources every environment of a job shares (InterCode-SQL: one database server)
    session: Callable[[Path, dict], AbstractContextManager[dict]] = lambda data_dir, settings: (
        contextlib.nullcontext({})
    )
    # its Environment class as "module:Class", imported when an environment is made (engines import heavy
    # packages: alfworld, pymysql, bm25s; a machine without one benchmark's dependencies runs the others)
    environment: str = ""
    code: tuple[str, ...] = ()  # its package (globs under hpl/): environment, engine, expert, data
    # the files its mirror folder must hold (a function: the names live in modules only its jobs import)
    mirror_files: Callable[[], tuple[str, ...]] = lambda: ()

    def data_dir(self, resources: str | os.PathLike = "resources") -> Path:
        return Path(resources) / self.name / "data"

    def env(self, data_dir: str | os.PathLike, settings: dict[str, Any], **shared: Any) -> Environment:
        """An environment; `shared` holds what the job's `session` yielded (e.g. the SQL server)."""
        extras = {**self.env_extras(Path(data_dir)), **self.env_options(settings)}
        return make_env(
            self.name, data_dir=str(data_dir), max_turns=settings["max_turns"], **extras, **shared
        )

    def eval_tasks(self, settings: dict[str, Any], split: str) -> int | None:
        return settings["eval_tasks"][split]


# --- ALFWorld ---------------------------------------------------------------------------------
def _prepare_alfworld(dest: Path, mirror: Path | None) -> dict:
    from hpl.alfworld.data import prepare_alfworld_data

    root = prepare_alfworld_data(dest, mirror=mirror)
    return {"data_dir": str(root)}


def _alfworld_expert(data_dir: Path, task_ids: list[str], settings: dict, on_record, skip, workers=1) -> dict:
    from hpl.alfworld.expert import collect_expert

    _, card = collect_expert(
        data_dir,
        task_ids,
        source=settings["expert_source"],
        on_record=on_record,
        skip=skip,
        max_turns=settings["max_turns"],
        workers=workers,
        **_alfworld_extras(Path(data_dir)),
    )
    return card


def _alfworld_extras(data_dir: Path) -> dict:
    # the planner's translation of each game, cached on disk beside the data and shared by every job
    return {"cache_dir": str(data_dir.parent / "translations")}


def _alfworld_mirror_files() -> tuple[str, ...]:
    from hpl.alfworld.data import DEFAULT_SPLITS, tarballs_for

    return tuple(tarballs_for(DEFAULT_SPLITS))


# --- WebShop ----------------------------------------------------------------------------------
def copy_from_mirror(
    mirror: Path | None, dest: Path, files: tuple[str, ...], benchmark: str, folder: str, origin: str
) -> dict:
    """Copy a benchmark's data files from its mirror folder into `dest`, each atomically.

    Neither WebShop nor InterCode-SQL has an official downloader this pipeline could call, so without a
    mirror the error says where the files come from (`origin`) and which setting names the mirror.
    """
    import shutil

    from hpl.envs.base import BenchmarkError

    if mirror is None:
        raise BenchmarkError(
            f"no {benchmark} data: point the config key `data_mirror` (or $HPL_DATA_MIRROR) at a folder "
            f"whose {folder}/ holds {', '.join(files)} ({origin})"
        )
    dest.mkdir(parents=True, exist_ok=True)
    for name in files:
        source = mirror / name
        if not source.is_file():
            raise BenchmarkError(f"{benchmark} data file missing: {source} (mirror setting `data_mirror`)")
        tmp = dest / f".{name}.tmp"
        shutil.copyfile(source, tmp)
        tmp.replace(dest / name)
    return {"data_dir": str(dest)}


def _prepare_webshop(dest: Path, mirror: Path | None) -> dict:
    from hpl.webshop.catalogue import REQUIRED_FILES

    return copy_from_mirror(
        mirror, dest, REQUIRED_FILES, "WebShop", "webshop", "the WebShop authors' small catalogue"
    )


def _webshop_expert(data_dir: Path, task_ids: list[str], settings: dict, on_record, skip, workers=1) -> dict:
    # the oracle takes seconds for a thousand goals: one process
    from hpl.webshop.expert import collect_expert

    env = make_env("webshop", data_dir=str(data_dir), max_turns=settings["max_turns"])
    records, card = collect_expert(env, [t for t in task_ids if not skip(t)])
    for record in records:
        on_record(record)
    return card


def _webshop_options(settings: dict) -> dict:
    """What admissible decoding lets a search query say (config `webshop.search_words`; default free)."""
    return {"search_words": settings.get("search_words", "free")}


def _webshop_mirror_files() -> tuple[str, ...]:
    from hpl.webshop.catalogue import REQUIRED_FILES

    return tuple(REQUIRED_FILES)


# --- InterCode-SQL -----------------------------------------------------------------------------
def _intercode_mirror_files() -> tuple[str, ...]:
    from hpl.intercode.tasks import DUMP_FILE, GPT4_LOG_FILE, TASKS_FILE

    return (TASKS_FILE, DUMP_FILE, GPT4_LOG_FILE)


def _prepare_intercode(dest: Path, mirror: Path | None) -> dict:
    origin = "InterCode's release; the dump also ships in the PyPI package intercode-bench"
    files = _intercode_mirror_files()
    return copy_from_mirror(mirror, dest, files, "InterCode-SQL", "intercode_sql", origin)


@contextlib.contextmanager
def _intercode_session(data_dir: Path, settings: dict):
    """One MariaDB server for the whole job (started here, stopped on exit, even after an error), or the
    existing server that `intercode_sql.server.host` names."""
    from hpl.intercode.server import make_server
    from hpl.intercode.tasks import DUMP_FILE

    server_settings = {k: v for k, v in (settings.get("server") or {}).items() if v is not None}
    if not server_settings.get("host"):
        folder = data_dir.parent / "servers"
        folder.mkdir(parents=True, exist_ok=True)
        import tempfile

        server_settings["folder"] = tempfile.mkdtemp(prefix="job-", dir=folder)
    server = make_server(data_dir / DUMP_FILE, **server_settings)
    try:
        yield {"server": server.start()}
    finally:
        server.stop()
        if "folder" in server_settings:
            import shutil

            shutil.rmtree(server_settings["folder"], ignore_errors=True)


def _intercode_options(settings: dict) -> dict:
    """The environment's reward, split and turn-limit rule from config `intercode_sql` (defaults: the
    released InterCode reward, the database-disjoint split, IPR's 0 at the turn limit)."""
    return {
        "reward": settings.get("reward", "intercode"),
        "split": settings.get("split", "database"),
        "truncation_reward": settings.get("truncation_reward", "zero"),
    }


def _intercode_expert(
    data_dir: Path, task_ids: list[str], settings: dict, on_record, skip, workers=1
) -> dict:
    # the gold queries take a second in all: one process
    from hpl.intercode.expert import expert_trajectories

    wanted, data_dir = set(task_ids), Path(data_dir)
    with _intercode_session(data_dir, settings) as shared:
        env = make_env(
            "intercode_sql",
            data_dir=str(data_dir),
            max_turns=settings["max_turns"],
            **_intercode_options(settings),
            **shared,
        )
        try:
            records, card = expert_trajectories(env, source=settings["expert_source"])
        finally:
            env.close()
    for record in records:
        if record["id"] in wanted and not skip(record["id"]):
            on_record(record)
    return card


BENCHMARKS: dict[str, Benchmark] = {
    "alfworld": Benchmark(
        name="alfworld",
        eval_splits=("seen", "unseen"),
        train_split="train",
        prepare=_prepare_alfworld,
        expert=_alfworld_expert,
        env_extras=_alfworld_extras,
        environment="hpl.alfworld.env:AlfworldEnv",
        code=("alfworld/*.py",),
        mirror_files=_alfworld_mirror_files,
    ),
    "webshop": Benchmark(
        name="webshop",
        eval_splits=("test",),
        train_split="train",
        prepare=_prepare_webshop,
        expert=_webshop_expert,
        env_options=_webshop_options,
        environment="hpl.webshop.env:WebShopEnv",
        code=("webshop/*.py",),
        mirror_files=_webshop_mirror_files,
    ),
    "intercode_sql": Benchmark(
        name="intercode_sql",
        eval_splits=("test",),
        train_split="train",
        prepare=_prepare_intercode,
        expert=_intercode_expert,
        session=_intercode_session,
        env_options=_intercode_options,
        environment="hpl.intercode.env:InterCodeSQLEnv",
        code=("intercode/*.py",),
        mirror_files=_intercode_mirror_files,
    ),
}


class EnvFactory:
    """`make_env()` for a job: opens the benchmark's session (e.g. starts the SQL server) once.

    `close()` ends the session; a job calls it before writing its last output, so that nothing slow (a
    server shutting down) runs between the output being complete and the job ending, a window in which an
    interruption makes Snakemake delete the finished output. The process's exit closes it otherwise
    (normally or through an exception; the server also dies with its parent, hpl.lifecycle).
    """

    def __init__(self, bench: Benchmark, data_dir: str | os.PathLike, settings: dict[str, Any]) -> None:
        import atexit

        self.bench, self.data_dir, self.settings = bench, data_dir, settings
        self._stack = contextlib.ExitStack()
        self._shared = self._stack.enter_context(bench.session(Path(data_dir), settings))
        atexit.register(self.close)

    def __call__(self) -> Environment:
        return self.bench.env(self.data_dir, self.settings, **self._shared)

    def close(self) -> None:
        self._stack.close()  # a second call does nothing


def env_factory(bench: Benchmark, data_dir: str | os.PathLike, settings: dict[str, Any]) -> EnvFactory:
    """The job's `make_env` (EnvFactory): one benchmark session, closed by `close()` or at exit."""
    return EnvFactory(bench, data_dir, settings)


def prepare_benchmark(
    name: str, dest: Path, configured_mirror: str | None, settings: dict | None = None
) -> dict:
    """Prepare a benchmark's data under `dest`; return the manifest (data folder, task counts)."""
    bench = BENCHMARKS[name]
    manifest = bench.prepare(Path(dest), benchmark_mirror(configured_mirror, name, bench.mirror_files()))
    settings = {"max_turns": 1, **(settings or {})}
    with bench.session(Path(manifest["data_dir"]), settings) as shared:
        env = bench.env(manifest["data_dir"], settings, **shared)
        try:
            manifest["splits"] = {s: len(env.task_ids(s)) for s in (bench.train_split, *bench.eval_splits)}
        finally:
            env.close()
    return {"benchmark": name, **manifest}


def check_mirrors(config: dict) -> None:
    """A configured data mirror that is missing or lacks a listed benchmark's files is named now (at parse
    time, `snakemake -n` included) instead of failing, or downloading, in the first data job."""
    for bench in config["benchmarks"]:
        if bench in BENCHMARKS:
            benchmark_mirror(config.get("data_mirror"), bench, BENCHMARKS[bench].mirror_files())


class ConfigError(ValueError):
    """A config that passes the schema but is inconsistent; the message names the key."""


# a benchmark's own overrides of the shared training blocks: (training block, key there) per benchmark key
TRAINING_OVERRIDES = {"sft": {"sft_epochs": "epochs"}, "dpo": {"dpo_lr": "lr"}}


def training_hparams(config: dict, bench: str, kind: str) -> dict:
    """`training.<kind>` with the benchmark's own overrides where it sets them (not null): `sft_epochs`
    (the embedded default trains WebShop's 1000 goals for fewer epochs) and `dpo_lr` (the paper: 1e-6 on
    WebShop and InterCode-SQL, 3e-6 on ALFWorld)."""
    own = config.get(bench, {})
    overrides = {
        key: own[name] for name, key in TRAINING_OVERRIDES[kind].items() if own.get(name) is not None
    }
    return {**config["training"][kind], **overrides}


def check_config(config: dict) -> None:
    """Cross-key checks the JSON schema cannot express."""
    for model in config["models"]:
        if model not in config["model_specs"]:
            known = ", ".join(sorted(config["model_specs"])) or "none"
            raise ConfigError(f"models: {model!r} has no entry in model_specs (known: {known})")
    for method in config["methods"]:
        if method not in config["method_specs"]:
            known = ", ".join(sorted(config["method_specs"])) or "none"
            raise ConfigError(f"methods: {method!r} has no entry in method_specs (known: {known})")
    for method, spec in config["method_specs"].items():
        if spec["kind"] == "hpl" and spec["segmenter"] not in config["segmenters"]:
            known = ", ".join(sorted(config["segmenters"]))
            raise ConfigError(
                f"method_specs.{method}.segmenter: unknown segmenter {spec['segmenter']!r} (known: {known})"
            )
    for key in ("curriculum_ablation", "loss_ablation"):
        for method in config["report"][key]:
            if method not in config["method_specs"]:
                raise ConfigError(f"report.{key}: {method!r} has no entry in method_specs")
    if config["report"]["phases"] not in config["method_specs"]:
        raise ConfigError(f"report.phases: {config['report']['phases']!r} has no entry in method_specs")
    for bench in config["benchmarks"]:
        if bench not in BENCHMARKS:
            raise ConfigError(f"benchmarks: unknown benchmark {bench!r} (known: {', '.join(BENCHMARKS)})")
        if bench not in config:
            raise ConfigError(f"benchmarks lists {bench!r} but the config has no {bench!r} section")
