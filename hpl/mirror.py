"""Where benchmark data comes from: a local mirror folder, or the official sources when online.

The mirror is named by the config key `data_mirror`; the environment variable `HPL_DATA_MIRROR` overrides
it (CI and tests use it, so they find data through the same setting as the pipeline). A relative path is
taken from the project root. The mirror holds one folder per benchmark (`alfworld/`, `webshop/`,
`intercode_sql/`) in the layout of `../shared/data/README.md`.

A mirror that is named but missing, or that lacks a benchmark's files, is an error naming the path and the
setting, never a silent fall-back to the official source: a typo in the setting must not turn into a
download (online) or a message that no mirror was given (offline).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from hpl.envs.base import BenchmarkError

ENV_VAR = "HPL_DATA_MIRROR"
CONFIG_KEY = "data_mirror"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class MirrorError(BenchmarkError):
    """The configured data mirror is missing or incomplete (the message names the path and the setting)."""


def mirror_setting(configured: str | os.PathLike | None) -> str:
    """Which setting names the mirror in use, as a user would look for it."""
    if os.environ.get(ENV_VAR):
        return f"${ENV_VAR}={os.environ[ENV_VAR]}"
    return f"config key `{CONFIG_KEY}: {configured}`"


def resolve_mirror(configured: str | os.PathLike | None) -> Path | None:
    """The mirror folder in use (env var first, then config), or None when neither names one."""
    value = os.environ.get(ENV_VAR) or configured
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = PROJECT_ROOT / path
    return path


def benchmark_mirror(
    configured: str | os.PathLike | None, benchmark: str, required: Iterable[str] = ()
) -> Path | None:
    """The benchmark's folder inside the mirror, or None when no mirror is configured (official source).

    MirrorError when a mirror is configured but it, the benchmark's folder, or one of the `required` files
    in that folder does not exist.
    """
    root = resolve_mirror(configured)
    if root is None:
        return None
    setting = mirror_setting(configured)
    if not root.is_dir():
        raise MirrorError(f"data mirror {root} does not exist or is not a folder (set by {setting})")
    folder = root / benchmark
    if not folder.is_dir():
        raise MirrorError(
            f"data mirror {root} has no {benchmark}/ folder (set by {setting}); "
            "its layout is described in docs/data.md"
        )
    missing = [name for name in required if not (folder / name).is_file()]
    if missing:
        raise MirrorError(
            f"data mirror folder {folder} lacks {', '.join(missing)} (set by {setting}); "
            "its layout is described in docs/data.md"
        )
    return folder
