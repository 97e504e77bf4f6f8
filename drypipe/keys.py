"""Task keys are directory names and shell words: only a strict, path-safe set is allowed."""
from __future__ import annotations

import posixpath
import re

from drypipe.errors import UserError

# Letters, digits, and `_ - . = + , @ :` inside; no leading dot or dash, no `/`, no whitespace,
# nothing a shell would interpret.  `..` is excluded separately.
_KEY_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\-.=+,@:]{0,199}")


def check_task_key(key: object) -> str:
    """Return `key` if it is a valid task key, else raise a UserError naming it."""
    if not isinstance(key, str):
        raise UserError(f"task key must be a string, got {type(key).__name__}: {key!r}")
    if not _KEY_PATTERN.fullmatch(key) or ".." in key:
        raise UserError(
            f"invalid task key {key!r}: use letters, digits and _-.=+,@: "
            "(no '/', '..', leading dot or dash, whitespace or shell characters)"
        )
    return key


def is_inside_relative_path(path: object) -> bool:
    """True if `path` names something inside a directory: a non-empty, normalised, `/`-separated
    relative path, with no `..` component and no NUL (the rule for a task's output files)."""
    return (isinstance(path, str) and path not in ("", ".") and "\0" not in path
            and not posixpath.isabs(path) and posixpath.normpath(path) == path
            and ".." not in path.split("/"))
