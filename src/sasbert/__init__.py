"""sasbert: how masked language models acquire syntax.

One module per pipeline stage (corpus, parse, tokenization, pretrain, probe, blimp, phases,
figures); ``python -m sasbert <stage> ...`` (or the ``sasbert`` console script) runs a stage, and
every Snakemake rule is a thin call into it.
"""

__version__ = "0.1.0"
