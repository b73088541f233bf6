"""Start of every pipeline script: send stdout/stderr (progress bars, warnings, tracebacks) to the rule's log,
and make SIGTERM/SIGINT a clean exit.

Snakemake keeps a rule's `log:` file; a script that writes there is debuggable after the fact, and a
failing job's traceback ends up where `snakemake` points the user. A job stopped by Snakemake, Slurm or
Ctrl-C exits through its `with` blocks, so the servers it started stop with it (hpl.lifecycle).
"""

from __future__ import annotations

import logging
import sys

from hpl.lifecycle import exit_on_signals


def to_log(snakemake) -> logging.Logger:
    """Redirect this process's output to `snakemake.log[0]`, turn SIGTERM/SIGINT into SystemExit, and
    return a logger named after the rule."""
    exit_on_signals()
    if snakemake.log:
        handle = open(snakemake.log[0], "a", buffering=1)
        sys.stdout = sys.stderr = handle
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    return logging.getLogger(f"hpl.{snakemake.rule}")


def use_threads(n: int) -> None:
    """Let torch use the cores Snakemake gave this job, and no more (jobs run side by side)."""
    import torch

    torch.set_num_threads(max(1, int(n)))
