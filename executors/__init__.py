"""Executor plugins for drypipe, registered under the `drypipe.executors` entry-point group."""
