"""Code fingerprints: which library files a rule's result depends on, derived from the imports.

A rule's `code` param is the hash of its script and of every `hpl` module the script imports,
transitively (the import closure, function-local imports included), so an edit anywhere a job's code
reaches reruns that job and an edit elsewhere reruns nothing. Two kinds of dependency are not written as
imports, and are handled here:

- a training entry point named as a string, ``"hpl.sft:train_sft"`` (hpl.launch runs it, maybe in
  another process): any string literal of that form counts as an import;
- a benchmark's own package (its environment, engine, expert and data), loaded by name through the
  environment registry: the caller names it in `own`.

Modules that belong to one member of a family (one benchmark's package, one segmenter's module) are
never entered unless they are the job's own (`others`): a line appended to hpl/webshop/reward.py reruns
WebShop's jobs only, even though hpl/benchmarks.py imports every benchmark's code inside its functions.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import re
from collections.abc import Iterable
from pathlib import Path

ENTRY_POINT = re.compile(r"^(hpl(?:\.\w+)+):\w+$")  # "hpl.sft:train_sft", as hpl.launch takes them


def module_file(root: Path, module: str) -> Path | None:
    """The file of `module` (dotted, under the package folder `root`/hpl), or None if there is none."""
    parts = module.split(".")
    if parts[0] != root.name:
        return None
    base = root.parent.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _with_parents(root: Path, module: str) -> list[Path]:
    """`module`'s file and its packages' __init__.py files, which Python runs on import too."""
    parts = module.split(".")
    files = [module_file(root, ".".join(parts[:i])) for i in range(1, len(parts) + 1)]
    return [f for f in files if f is not None]


@functools.cache
def imported_files(path: Path, root: Path) -> tuple[Path, ...]:
    """The `root` package's files that `path` imports anywhere in its body (or names as an entry point)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = root.name
    found: list[Path] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from hpl.x import y`: y may itself be a module (hpl.x.y) or a name defined in hpl.x
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = ENTRY_POINT.match(node.value)
            names = [match.group(1)] if match else []
        else:
            continue
        for name in names:
            if name == package or name.startswith(package + "."):
                found += _with_parents(root, name)
    return tuple(dict.fromkeys(found))


def expand(root: Path, patterns: Iterable[str]) -> set[Path]:
    """Files under `root` matching glob `patterns` (relative to `root`, e.g. "webshop/*.py")."""
    return {p for pattern in patterns for p in root.glob(pattern) if p.is_file()}


def dependencies(
    entries: Iterable[Path], root: Path, own: Iterable[str] = (), others: Iterable[str] = ()
) -> list[Path]:
    """Every file reachable from `entries` and the `own` globs through imports, never entering the
    `others` globs (other members of a family the job is not about); sorted."""
    own_files = expand(root, own)
    barred = expand(root, others) - own_files
    seen: set[Path] = set()
    todo = [Path(p) for p in entries] + sorted(own_files)
    while todo:
        path = todo.pop()
        if path in seen or path in barred:
            continue
        seen.add(path)
        if path.suffix == ".py":
            todo += imported_files(path, root)
    return sorted(seen)


def fingerprint(
    entries: Iterable[str | Path], root: str | Path, own: Iterable[str] = (), others: Iterable[str] = ()
) -> str:
    """Hash of the files `dependencies` finds (their paths relative to root's parent, and contents)."""
    root = Path(root).resolve()
    digest = hashlib.sha256()
    for path in dependencies([Path(e).resolve() for e in entries], root, own, others):
        digest.update(str(path.relative_to(root.parent)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]
