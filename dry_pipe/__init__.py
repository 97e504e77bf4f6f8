"""Compatibility alias: pipelines written for the original DryPipe import `dry_pipe`."""
from drypipe import *  # noqa: F401,F403
from drypipe import __all__  # noqa: F401
