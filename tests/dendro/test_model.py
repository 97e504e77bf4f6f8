"""The model rejects what the service rejects and writes what the service expects."""
import pytest

import dendro_bridge
from dendro_bridge import (DendroJobDefinition, DendroJobInputFile, DendroJobOutputFile, DendroJobParameter,
                           DendroJobRequiredResources, ValidationError)
from dendro_bridge.client import DendroClient, DendroClientError


def wire_definition(**changes):
    d = {"appName": "a", "processorName": "p", "inputFiles": [], "outputFiles": [],
         "parameters": [{"name": "x", "value": 1}]}
    d.update(changes)
    return d


def test_round_trip():
    d = wire_definition(cacheBust="b")
    assert DendroJobDefinition.from_wire(d).to_wire() == d


@pytest.mark.parametrize("bad, message", [
    (wire_definition(extra=1), "unknown key"),
    (wire_definition(cacheBust=None), "null is not allowed"),
    ({"appName": "a", "processorName": "p", "inputFiles": [], "outputFiles": []}, "missing key"),
    (wire_definition(parameters=[{"name": "x", "value": {"a": 1}}]), "invalid DendroJobParameter.value"),
    (wire_definition(parameters=[{"name": "x", "value": 1, "type": "int"}]), "unknown key"),
    (wire_definition(parameters=[{"name": "x"}]), "missing key"),
    (wire_definition(outputFiles=[{"name": "../up", "fileBaseName": "o.txt"}]), "invalid DendroJobOutputFile.name"),
    (wire_definition(outputFiles=[{"name": "o", "fileBaseName": "../../etc/passwd"}]), "fileBaseName"),
    (wire_definition(outputFiles=[{"name": "o", "fileBaseName": "a/b.txt"}]), "fileBaseName"),
    (wire_definition(inputFiles=[{"name": "i", "fileBaseName": "i.txt", "url": 3}]), "url"),
    (wire_definition(appName=1), "appName"),
])
def test_rejects_what_the_service_rejects(bad, message):
    with pytest.raises(ValidationError, match=message):
        DendroJobDefinition.from_wire(bad)


def test_required_resources_types():
    DendroJobRequiredResources(numCpus=1, numGpus=0, memoryGb=0.5, timeSec=60)
    with pytest.raises(ValidationError):
        DendroJobRequiredResources(numCpus=1.5, numGpus=0, memoryGb=4, timeSec=60)
    with pytest.raises(ValidationError):
        DendroJobRequiredResources(numCpus=True, numGpus=0, memoryGb=4, timeSec=60)


def test_null_parameter_value_is_sent_explicitly():
    # The official client drops it (exclude_none), which the service then rejects.
    assert DendroJobParameter(name="x", value=None).to_wire() == {"name": "x", "value": None}
    assert DendroJobParameter.from_wire({"name": "x", "value": None}).value is None


def test_list_parameter_values():
    assert DendroJobParameter(name="x", value=[1, 2.5]).value == [1, 2.5]
    assert DendroJobParameter(name="x", value=["a"]).value == ["a"]
    assert DendroJobParameter(name="x", value=[True]).value == [True]
    for bad in ([[1]], [1, "a"], [True, 1]):  # the service refuses lists mixing types
        with pytest.raises(ValidationError):
            DendroJobParameter(name="x", value=bad)


def test_pairio_aliases():
    assert dendro_bridge.PairioJobDefinition is DendroJobDefinition
    assert dendro_bridge.PairioJobOutputFile is DendroJobOutputFile
    assert dendro_bridge.PairioJob is dendro_bridge.DendroJob


def test_settings_from_arguments_then_dendro_then_pairio_env(monkeypatch):
    for name in ("DENDRO_API_URL", "DENDRO_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PAIRIO_API_URL", "http://pairio.example")
    monkeypatch.setenv("PAIRIO_API_KEY", "pk")
    client = DendroClient()
    assert (client.api.base_url, client.api_key) == ("http://pairio.example", "pk")
    monkeypatch.setenv("DENDRO_API_URL", "http://dendro.example/")
    monkeypatch.setenv("DENDRO_API_KEY", "dk")
    client = DendroClient()
    assert (client.api.base_url, client.api_key) == ("http://dendro.example", "dk")
    client = DendroClient("http://arg.example", "ak")
    assert (client.api.base_url, client.api_key) == ("http://arg.example", "ak")


def test_submit_without_key_or_with_unsubmitted_upstream_fails(monkeypatch):
    for name in ("DENDRO_API_KEY", "PAIRIO_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    resources = DendroJobRequiredResources(numCpus=1, numGpus=0, memoryGb=1, timeSec=10)
    d = DendroJobDefinition.from_wire(wire_definition())
    with pytest.raises(DendroClientError, match="DENDRO_API_KEY"):
        dendro_bridge.submit_job(service_name="s", job_definition=d, required_resources=resources,
                                 base_url="http://127.0.0.1:9")
    upstream = DendroJobOutputFile(name="o", fileBaseName="o.txt")
    downstream = DendroJobDefinition(appName="a", processorName="p", outputFiles=[], parameters=[],
                                     inputFiles=[DendroJobInputFile(name="i", fileBaseName="i.txt", url=upstream)])
    with pytest.raises(DendroClientError, match="not submitted first"):
        dendro_bridge.submit_job(service_name="s", job_definition=downstream, required_resources=resources,
                                 base_url="http://127.0.0.1:9", api_key="k")
