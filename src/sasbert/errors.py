"""User-facing errors: the CLI prints them as one clear line and exits non-zero."""


class StageError(Exception):
    """A stage cannot go on; the message says why and what to do. ``exit_code`` is the CLI's."""

    exit_code = 2


class InputError(StageError):
    """Bad input data or configuration; the message names the file, line or config key."""


class TrainingDiverged(StageError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""

    exit_code = 3


class TrainingInterrupted(StageError):
    """SIGTERM (Slurm time limit, preemption): a checkpoint was saved; rerun to resume."""

    exit_code = 143
