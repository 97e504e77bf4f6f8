"""Executor plugins for drypipe: each declares a light descriptor (`*_plugin.py`) under the
`drypipe.plugins` entry-point group."""
