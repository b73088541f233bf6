"""ALFWorld data: the official `$ALFWORLD_DATA` layout, its splits, task ids and task types.

Layout (what `alfworld-download` produces, and what the data mirror's tarballs hold):

    dest/json_2.1.1/{train, valid_train, valid_seen, valid_unseen}/<task folder>/<trial>/game.tw-pddl
    dest/logic/{alfred.pddl, alfred.twl2}

`prepare_alfworld_data` builds it from the mirror (extracting only the tarballs the requested splits need)
or, with no mirror, with the official `alfworld-download` when online. A task id is a game folder relative
to `json_2.1.1`, e.g. "valid_seen/pick_and_place_simple-Mug-None-Desk-308/trial_T2019...".
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable
from pathlib import Path

from hpl.envs.base import BenchmarkError
from hpl.mirror import ENV_VAR

JSON_DIR = "json_2.1.1"
LOGIC_DIR = "logic"
GAME_FILE = "game.tw-pddl"

#: split name -> folder under json_2.1.1 ("seen"/"unseen" are the paper's names for the eval splits)
SPLIT_DIRS = {
    "train": "train",
    "valid_train": "valid_train",
    "seen": "valid_seen",
    "unseen": "valid_unseen",
    "valid_seen": "valid_seen",
    "valid_unseen": "valid_unseen",
}
#: mirror tarball -> the top-level folders it provides (json split folders, or "logic")
TARBALLS = {
    "json_2.1.1-valid.tar.gz": ("valid_seen", "valid_unseen", LOGIC_DIR),
    "json_2.1.1-train.tar.gz": ("train", "valid_train"),
}
#: the folder prefix of a game -> the paper's task type (longest prefix first: pick_and_place is a
#: prefix of none of the others, but keep the match explicit)
TASK_TYPES = {
    "pick_clean_then_place": "Clean",
    "pick_heat_then_place": "Heat",
    "pick_cool_then_place": "Cool",
    "pick_two_obj": "Pick2",
    "look_at_obj": "Examine",
    "pick_and_place": "Pick",
}
DEFAULT_SPLITS = ("train", "seen", "unseen")
MARKER_PREFIX = ".hpl-prepared-"


def split_dir(split: str) -> str:
    try:
        return SPLIT_DIRS[split]
    except KeyError:
        raise ValueError(f"unknown ALFWorld split {split!r}; known: {', '.join(SPLIT_DIRS)}") from None


def task_type(task_id: str) -> str:
    """The task type (Pick, Clean, Heat, Cool, Examine, Pick2) of a task id or game folder path.

    >>> task_type("valid_seen/pick_two_obj_and_place-Newspaper-None-Drawer-224/trial_T1")
    'Pick2'
    """
    parts = Path(task_id).parts
    # the task folder is the one before the trial folder; accept a bare folder name too
    folder = next((p for p in reversed(parts) if any(p.startswith(prefix) for prefix in TASK_TYPES)), None)
    if folder is not None:
        for prefix, name in TASK_TYPES.items():
            if folder.startswith(prefix):
                return name
    raise ValueError(f"not an ALFWorld task id (no known task-type prefix): {task_id!r}")


def split_of(task_id: str) -> str:
    """The split name of a task id as `task_ids` takes it: "train", "valid_train", "seen" or "unseen"."""
    folder = Path(task_id).parts[0]
    return {"valid_seen": "seen", "valid_unseen": "unseen"}.get(folder, folder)


def game_path(data_dir: str | os.PathLike, task_id: str) -> Path:
    return Path(data_dir) / JSON_DIR / task_id / GAME_FILE


def list_task_ids(data_dir: str | os.PathLike, split: str) -> list[str]:
    """Sorted task ids of a split's solvable games (as ALFWorld's own game collection filters them)."""
    folder = split_dir(split)
    root = Path(data_dir) / JSON_DIR / folder
    if not root.is_dir():
        raise BenchmarkError(
            f"ALFWorld split {split!r} not found at {root}; prepare the data with "
            f"hpl.alfworld.data.prepare_alfworld_data(dest, mirror, splits=[{split!r}])"
        )
    ids = []
    for game in sorted(root.glob(f"*/*/{GAME_FILE}")):
        # ALFWorld skips movable-receptacle and sliced-object games and games marked unsolvable
        if "movable" in game.parent.parent.name or "Sliced" in game.parent.parent.name:
            continue
        if _is_solvable(game):
            ids.append(game.parent.relative_to(root.parent).as_posix())
    return ids


def _is_solvable(game: Path) -> bool:
    # the flag sits after the (long) PDDL texts; a full JSON parse is ~1 ms per game, fine for 3.5k games
    try:
        return bool(json.loads(game.read_text()).get("solvable", False))
    except (OSError, ValueError):
        return False  # a corrupt game is not listed; resetting it names the file


# --- preparation ---------------------------------------------------------------------------------------
def tarballs_for(splits: Iterable[str]) -> list[str]:
    folders = {split_dir(s) for s in splits}
    needed = [name for name, provides in TARBALLS.items() if folders & set(provides)]
    # the logic files come with the validation tarball: the official layout always has them
    return sorted(set(needed) | {"json_2.1.1-valid.tar.gz"})


def _mirror_folder(mirror: str | os.PathLike) -> Path:
    """Accept the alfworld folder of the mirror or the mirror root that holds it."""
    mirror = Path(mirror)
    if (mirror / "alfworld").is_dir() and not any((mirror / name).exists() for name in TARBALLS):
        return mirror / "alfworld"
    return mirror


def prepare_alfworld_data(
    dest: str | os.PathLike,
    mirror: str | os.PathLike | None = None,
    splits: Iterable[str] = DEFAULT_SPLITS,
) -> Path:
    """Put the official ALFWorld layout under `dest` and return `dest`.

    From `mirror` (a folder with the tarballs of ../shared/data/README.md): extract each needed tarball
    into a temp folder inside `dest`, move its folders into place, then write a completion marker, so an
    interrupted run leaves no half folder in place and a rerun is a no-op. Without a mirror: run the
    official `alfworld-download` (needs internet). With neither: BenchmarkError naming both ways.
    """
    dest = Path(dest)
    splits = list(splits)
    for split in splits:
        split_dir(split)  # validate early
    if mirror is not None:
        folder = _mirror_folder(mirror)
        for name in tarballs_for(splits):
            _extract_once(folder / name, dest)
        return dest
    return _download(dest)


def _marker(dest: Path, source: str) -> Path:
    return dest / f"{MARKER_PREFIX}{source}"


def _extract_once(tarball: Path, dest: Path) -> None:
    marker = _marker(dest, tarball.name)
    if marker.exists():
        return
    if not tarball.is_file():
        raise BenchmarkError(f"ALFWorld mirror tarball not found: {tarball}")
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest, prefix=".extract-"))
    try:
        with tarfile.open(tarball) as archive:
            archive.extractall(tmp, filter="data")
        for folder in TARBALLS[tarball.name]:
            relative = Path(folder) if folder == LOGIC_DIR else Path(JSON_DIR) / folder
            source, target = tmp / relative, dest / relative
            if not source.is_dir():
                raise BenchmarkError(f"ALFWorld mirror tarball {tarball} lacks {relative}")
            if target.exists():  # left by an interrupted earlier run (no marker): replace it
                shutil.rmtree(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
        marker.write_text(f"extracted from {tarball}\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _online(host: str = "github.com", port: int = 443, timeout: float = 5.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _no_source_error(why: str) -> BenchmarkError:
    return BenchmarkError(
        f"no ALFWorld data source: {why}. Either point the pipeline at a data mirror (config key "
        f"`data_mirror`, or the environment variable {ENV_VAR}) holding alfworld/json_2.1.1-*.tar.gz, or run "
        f"on a machine with internet access, where the official `alfworld-download` fetches the data."
    )


def _download(dest: Path) -> Path:
    marker = _marker(dest, "alfworld-download")
    if marker.exists():
        return dest
    command = shutil.which("alfworld-download")
    if command is None:
        raise _no_source_error("no mirror given and `alfworld-download` is not installed")
    if not _online():
        raise _no_source_error("no mirror given and no internet access for `alfworld-download`")
    dest.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "ALFWORLD_DATA": str(dest)}
    done = subprocess.run([command, "--data-dir", str(dest)], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip()[-800:]
        raise _no_source_error(f"`alfworld-download` failed (exit {done.returncode}): {tail}")
    marker.write_text("downloaded with alfworld-download\n")
    return dest
