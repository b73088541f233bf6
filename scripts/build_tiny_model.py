"""Rule tiny_model: tokenizer trained on the expert corpus + a small Qwen2 LM initialised from config."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")  # noqa: F821  the workflow's own hpl/

from hpl.io import read_jsonl
from hpl.models import build_tiny_model, parameter_count
from hpl.runlog import to_log

smk = snakemake  # noqa: F821 (snakemake is injected)
log = to_log(smk)
model, tokenizer = build_tiny_model(read_jsonl(smk.input.expert), smk.output[0], smk.params.spec)
log.info("tiny model: %d parameters, vocabulary %d", parameter_count(model), len(tokenizer))
