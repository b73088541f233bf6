# Hierarchical Preference Learning (HPL) for LLM agents. The logic lives in hpl/, one rule file per stage.
from snakemake.utils import min_version, validate

min_version("9.0")


# the embedded default; a --configfile (a preset) is layered over it, key by key
configfile: f"{workflow.basedir}/config/config.yaml"


validate(config, f"{workflow.basedir}/config/schema.yaml")


# `snakemake --report report.html`: the tables and figures with the captions in report/
report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/expert.smk"
include: "rules/models.smk"
include: "rules/train.smk"
include: "rules/explore.smk"
include: "rules/pairs.smk"
include: "rules/hpl.smk"
include: "rules/evaluate.smk"
include: "rules/tables.smk"


rule all:
    input:
        tables(),
