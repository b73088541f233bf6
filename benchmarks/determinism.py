"""Is SFT of the tiny model reproducible, and what breaks it? (issue 16: WebShop SFT seed 0 gave 36.51,
29.66, 20.77 and 28.56 in four sessions with the same code, config and seed.)

Trains the embedded tiny model on `--tasks` expert trajectories of a benchmark for `--steps` optimiser
steps, once per variant, each in a fresh process, and prints the training loss, a hash of the weights
and the largest weight difference from the first variant:

- `default`, twice: the same machine, the same settings;
- `1 thread`: torch.set_num_threads(1) instead of the machine's cores;
- `AVX2 kernels`: torch's and MKL's AVX2 code paths (ATEN_CPU_CAPABILITY, MKL_ENABLE_INSTRUCTIONS), what
  a CPU without AVX-512 (e.g. an AMD EPYC before Zen 4) runs, on this machine.

    python benchmarks/determinism.py webshop --tasks 200 --steps 100
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml  # noqa: E402

from hpl.benchmarks import BENCHMARKS, prepare_benchmark  # noqa: E402
from hpl.mirror import PROJECT_ROOT  # noqa: E402

VARIANTS = {
    "default": {},
    "default again": {},
    "1 thread": {"HPL_THREADS": "1"},
    "AVX2 kernels": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
}


def train_once(args: argparse.Namespace, out: Path) -> dict:
    """One SFT run in this process: its loss and the hash of its weights (the child's work)."""
    import torch
    from learning_curve import expert_records

    from hpl.models import build_tiny_model
    from hpl.sft import train_sft

    if os.environ.get("HPL_THREADS"):
        torch.set_num_threads(int(os.environ["HPL_THREADS"]))
    config = yaml.safe_load(Path(args.config).read_text())
    settings = config[args.bench]
    work = Path(args.work)
    manifest = prepare_benchmark(args.bench, work / args.bench / "data", config["data_mirror"], settings)
    records = expert_records(args.bench, Path(manifest["data_dir"]), settings, args.tasks, work)
    build_tiny_model(records, out / "base", config["model_specs"]["tiny"])
    hp = {**config["training"]["sft"], "max_steps": args.steps, "save_steps": 10**9}
    metrics = train_sft(str(out / "base"), records, str(out / "sft"), hp, seed=0)
    return {
        "loss": metrics["train_loss"],
        "weights": weights_hash(out / "sft"),
        "threads": torch.get_num_threads(),
        "kernels": torch.backends.cpu.get_cpu_capability(),
    }


def weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def weights_hash(model_dir: Path) -> str:
    state = weights(model_dir)
    return hashlib.sha256(b"".join(state[k].numpy().tobytes() for k in sorted(state))).hexdigest()[:16]


def max_difference(left: dict, right: dict) -> float:
    return max((left[k] - right[k]).abs().max().item() for k in left)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bench", choices=sorted(BENCHMARKS))
    parser.add_argument("--tasks", type=int, default=200, help="expert trajectories to train on")
    parser.add_argument("--steps", type=int, default=100, help="SFT optimiser steps per run")
    parser.add_argument("--config", default=str(PROJECT_ROOT / "config" / "config.yaml"))
    parser.add_argument("--work", default="results/determinism")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # the output folder of one run
    args = parser.parse_args()
    if args.child:
        print(json.dumps(train_once(args, Path(args.child))))
        return
    runs = Path(args.work) / "runs"
    first = None
    print(f"{'variant':<15} {'kernels':<8} {'threads':>7} {'loss':>20} {'weights':<17} max |dw| vs default")
    for i, (name, env) in enumerate(VARIANTS.items()):
        out = runs / f"{i}"
        command = [sys.executable, __file__, *sys.argv[1:], "--child", str(out)]
        done = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"{name}: the training run failed:\n{done.stderr[-3000:]}")
        row = json.loads(done.stdout.strip().splitlines()[-1])
        state = weights(out / "sft")
        first = first if first is not None else state
        diff = max_difference(first, state)
        print(
            f"{name:<15} {row['kernels']:<8} {row['threads']:>7} {row['loss']:>20.15f} {row['weights']:<17} {diff:.3g}"
        )


if __name__ == "__main__":
    main()
