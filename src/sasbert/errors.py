"""User-facing errors: the CLI prints them as one clear line and exits non-zero."""


class InputError(Exception):
    """Bad input data or configuration; the message names the file, line or config key."""
