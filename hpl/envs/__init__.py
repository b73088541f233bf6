"""Benchmark environments behind one protocol (see `hpl.envs.base`)."""

from hpl.envs.base import BenchmarkError, Environment, StepResult, known_envs, make_env

__all__ = ["BenchmarkError", "Environment", "StepResult", "known_envs", "make_env"]
