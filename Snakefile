# sasbert: how masked language models acquire syntax (Chen et al., ICLR 2024, and beyond).
# The DAG: corpus -> parse -> tokenize -> pretrain -> {probe, blimp} -> phases -> figures/report.
# Outputs live under results/<stage>/..., logs under results/logs/, job benchmarks under
# results/benchmarks/. Every rule is a thin call into the `sasbert` package (src/sasbert).
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

from sasbert.config import ConfigError, check_config_file

min_version("9.0")


# Snakemake's own message for an empty config file, or a list, names no file: check ours first.
if Path("config.yaml").exists():
    try:
        check_config_file("config.yaml")
    except ConfigError as err:
        raise WorkflowError(str(err)) from None


configfile: "config.yaml"


# common.smk puts the project's venv first on PATH, for the jobs (and remote jobs) to find `sasbert`.
envvars:
    "PATH",


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/corpus.smk"
include: "workflow/rules/parse.smk"
include: "workflow/rules/tokenize.smk"
include: "workflow/rules/pretokenized.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/series.smk"
include: "workflow/rules/measures.smk"
include: "workflow/rules/glue.smk"
include: "workflow/rules/analysis.smk"


rule all:
    default_target: True
    input:
        final_outputs(),
