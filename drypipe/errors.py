"""Errors shown to users as one clear line."""


class UserError(Exception):
    """Bad input or a refused operation: printed as one line, exit code 1, no traceback."""


class GeneratorError(UserError):
    """The pipeline generator raised or yielded something invalid."""


class BackendUnavailable(Exception):
    """An executor's backend cannot be reached for now (Slurm controller down, connection lost):
    the loop keeps the tasks ready and tries again later, instead of stopping the run."""
