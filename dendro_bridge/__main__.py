"""`python -m dendro_bridge ...` runs the `dendro` command group."""
from dendro_bridge.cli import dendro

dendro(prog_name="python -m dendro_bridge")
