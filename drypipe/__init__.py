"""drypipe: a file-system-native DAG orchestrator for scientific pipelines."""
from drypipe.dsl import DSL, DryPipe, Pipeline
from drypipe.errors import UserError
from drypipe.task_conf import TaskConf

__version__ = "0.1.0"
__all__ = ["DSL", "DryPipe", "Pipeline", "TaskConf", "UserError", "__version__"]
