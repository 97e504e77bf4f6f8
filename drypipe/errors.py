"""Errors shown to users as one clear line, and the checks that raise them."""
from __future__ import annotations

from typing import Any


class UserError(Exception):
    """Bad input or a refused operation: printed as one line, exit code 1, no traceback."""


class GeneratorError(UserError):
    """The pipeline generator raised or yielded something invalid."""


class BackendUnavailable(Exception):
    """An executor's backend cannot be reached for now (Slurm controller down, connection lost):
    the loop keeps the tasks ready and tries again later, instead of stopping the run."""


def check_type(value: Any, types: type | tuple[type, ...], expected: str, what: str) -> None:
    """Refuse a value not of `types`: "<what> must <expected>, got <its type>: <value>", where
    `expected` says it after "must" ("be a str or None")."""
    if not isinstance(value, types):
        shown = repr(value)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        raise UserError(f"{what} must {expected}, got {type(value).__name__}: {shown}")


# The longest value (in characters) a task may take or produce: values travel through files
# (task-env.sh, output_vars), never argv or the environment, so the bound is one of sanity.
# Kept equal to __max_value_length in resources/task-lib.sh.
MAX_VALUE_LENGTH = 10_000_000


def text_problem(value: str) -> str | None:
    """Why a string cannot reach a task's files intact, or None: a NUL character (bash and
    environment variables end a string there, silently), a lone surrogate (not Unicode
    text: it has no UTF-8 form), or more than MAX_VALUE_LENGTH characters.  Phrased to
    follow the name of the culprit."""
    if len(value) > MAX_VALUE_LENGTH:
        return f"is {len(value):,} characters long, more than the {MAX_VALUE_LENGTH:,} a value may have"
    if "\0" in value:
        return f"contains a NUL character (at position {value.index(chr(0))})"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            return (f"contains a lone surrogate {value[e.start]!r} (at position {e.start}): "
                    "not valid Unicode text")
    return None


def check_text(value: str, what: str) -> None:
    """Refuse a string with a NUL or a lone surrogate (text_problem): "<what> contains ..."."""
    problem = text_problem(value)
    if problem is not None:
        raise UserError(f"{what} {problem}")
