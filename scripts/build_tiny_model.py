"""Rule tiny_model: tokenizer trained on the expert corpus + a small Qwen2 LM initialised from config."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")  # noqa: F821  the workflow's own hpl/

from hpl.io import read_jsonl
from hpl.models import build_tiny_model, parameter_count
from hpl.runlog import to_log

smk = snakemake  # noqa: F821 (snakemake is injected)
log = to_log(smk)
records = read_jsonl(smk.input.expert)
model, tokenizer = build_tiny_model(records, smk.output[0], smk.params.spec, generation=smk.params.generation)
log.info(
    "tiny model: %d parameters, vocabulary %d, context %d positions",
    parameter_count(model),
    len(tokenizer),
    model.config.max_position_embeddings,
)
