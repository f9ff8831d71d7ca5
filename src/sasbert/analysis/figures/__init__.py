"""Stage 8, figures: the paper's figures 1-5, drawn from the gathered tables alone.

Inputs are the all-runs tables of ``sasbert phases gather`` (``runs, train, loss, uas, heads,
blimp``.parquet, columns in ``sasbert.analysis.gather``) and the phases table of ``sasbert phases detect``;
no checkpoint is read, so a ``results/tables`` folder copied from a cluster is enough.

Figures (each written as ``<name>.png`` and ``<name>.pdf``), one module each, whose ``draw``
returns the matplotlib ``Figure``; ``FIGURES`` below is the one list of them:

* ``fig1_training`` (``training``): loss, UAS and BLiMP of the baseline run(s) against step.
* ``fig2_regularizers`` (``regularizers``): the same for baseline, SAS+ and SAS-, and their context
  use (``context.parquet``: the cost of a +-w attention window at the final checkpoint).
* ``fig3_release`` (``release``): release runs SAS-(k), and their final values against k.
* ``fig4a_heads`` (``heads``): per-head UAS heat maps across checkpoints.
* ``fig4b_phenomena`` (``phenomena``): BLiMP per phenomenon across checkpoints.
* ``fig5_seeds`` (``seeds``): UAS vs loss vs BLiMP across seeds and runs.

What they share (style, colours, options, axes, markers) is ``sasbert.analysis.figures.common``. A figure's
job runs its own module, ``common``, ``render`` (drawing by module, saving, reading tables) and
``cli``; the list of figures is ``registry``, which no figure imports. Editing one figure's module
redraws that figure alone, and adding a figure redraws no other (``sasbert.code_identity``).
``render`` imports a figure's module by name, only when it draws it.

Artists carry gids for tests and post-processing: ``curve:<run>:<metric>``, ``band:<run>:<metric>``,
``onset:<event>:<run>``, ``note``, ``phase_window``, ``final:<run>:<metric>``, ``ref:<run>:<metric>``,
``heads:<run>:<step>``, ``phenomena:<run>``.

CLI::

    sasbert figures --tables results/tables --phases results/tables/phases.parquet
        (--out-dir results/figures | --out fig.png fig.pdf) [--figure fig1_training ...] [--dpi 200] [--width 6.75]
        [--xscale symlog|log|linear] [--band range|sd|none] [--train-loss-window 25]
        [--heads-checkpoints 6] [--treebank NAME] [--blimp-variant NAME]
"""
