"""Where benchmark data comes from: a local mirror folder, or the official sources when online.

The mirror is named by the config key `data_mirror`; the environment variable `HPL_DATA_MIRROR` overrides
it (CI and tests use it, so they find data through the same setting as the pipeline). A relative path is
taken from the project root. The mirror holds one folder per benchmark (`alfworld/`, `webshop/`,
`intercode_sql/`) in the layout of `../shared/data/README.md`.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "HPL_DATA_MIRROR"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def resolve_mirror(configured: str | os.PathLike | None) -> Path | None:
    """The mirror folder in use (env var first, then config), or None when neither names one."""
    value = os.environ.get(ENV_VAR) or configured
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = PROJECT_ROOT / path
    return path


def benchmark_mirror(configured: str | os.PathLike | None, benchmark: str) -> Path | None:
    """The benchmark's folder inside the mirror, or None when there is no usable mirror for it."""
    root = resolve_mirror(configured)
    if root is None:
        return None
    folder = root / benchmark
    return folder if folder.is_dir() else None
