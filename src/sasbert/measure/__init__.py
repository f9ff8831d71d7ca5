"""Per-checkpoint measures: the checkpoint series (local, hub) and the probe, BLiMP and GLUE scorers."""
