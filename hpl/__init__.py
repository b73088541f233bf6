"""Hierarchical Preference Learning (HPL) for LLM agents: the library behind the Snakemake pipeline.

Everything worth testing lives here and imports without Snakemake; `scripts/` are thin entry points.
"""

__version__ = "0.1.0"
