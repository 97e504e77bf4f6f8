"""Errors shown to users as one clear line."""


class UserError(Exception):
    """Bad input or a refused operation: printed as one line, exit code 1, no traceback."""


class GeneratorError(UserError):
    """The pipeline generator raised or yielded something invalid."""
