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


class OutputError(StageError):
    """An output could not be written (disk full, file size limit, quota); rerunning after freeing
    space resumes from what was written completely."""

    exit_code = 4


# How a failed write shows in each writer's error: Python's OSError, safetensors' SafetensorError
# (its Rust io error in the message) and torch.save's RuntimeError (PytorchStreamWriter, or the C++
# stream under it, which names no OS error at all).
OS_WRITE_FAILURES = ("No space left on device", "File too large", "Disk quota exceeded")
STREAM_WRITE_FAILURES = ("file write failed", "iostream error")  # torch.save's: no OS error named


def write_failure(err: BaseException, path=None) -> str | None:
    """Why a write failed, as the OS would say it, or None when ``err`` is not a failed write.
    Where the writer's error names no OS error (torch.save), it is found from ``path``'s file
    system: the file size limit (``ulimit -f``) or no space left."""
    import errno
    import os
    import resource
    import shutil

    chain = [err]  # torch raises its own error while handling the stream's
    while chain[-1].__context__ is not None and len(chain) < 10:
        chain.append(chain[-1].__context__)
    for link in chain:
        if isinstance(link, OSError) and link.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            return os.strerror(link.errno)
    text = "\n".join(str(link) for link in chain)
    named = [message for message in OS_WRITE_FAILURES if message in text]
    if named:
        return named[0]
    if not any(message in text for message in STREAM_WRITE_FAILURES):
        return None
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY:
        return f"{os.strerror(errno.EFBIG)}: the file size limit is {limit} bytes (ulimit -f)"
    if path is not None and shutil.disk_usage(path).free < 1 << 20:
        return os.strerror(errno.ENOSPC)
    return text.strip().splitlines()[0]
