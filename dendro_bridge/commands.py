"""The `drypipe dendro` command group (entry point `drypipe.commands`).

Light on purpose: every `drypipe` command reads this tuple; dendro_bridge/cli.py (and the
service code it loads) is imported only when `drypipe dendro ...` runs.
"""
from __future__ import annotations

from drypipe.cli.plugin_commands import CommandSpec

COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("dendro", "dendro_bridge.cli:dendro", "Dendro",
                "Self-hosted Dendro service and compute resource: serve, admin, compute.",
                example="drypipe dendro serve --data-dir /srv/dendro"),
)
