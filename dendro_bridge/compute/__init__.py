"""The compute resource: claims runnable jobs of its apps and runs their processors."""
from dendro_bridge.compute.api import ComputeApi
from dendro_bridge.compute.drypipe_runner import DrypipeRunner
from dendro_bridge.compute.resource import ComputeResource
from dendro_bridge.compute.runner import ProcessorCommand, ProcessorRunner, RunOutcome, SubprocessRunner
from dendro_bridge.compute.worker import LocalApp

__all__ = ["ComputeApi", "ComputeResource", "DrypipeRunner", "LocalApp", "ProcessorCommand", "ProcessorRunner",
           "RunOutcome", "SubprocessRunner"]
