"""Dendro job model with the service's wire names (camelCase) and its validation rules.

Requests are validated strictly, as the hosted service does: unknown keys, missing keys,
`null` for optional keys and wrong types are all rejected.  Responses are read leniently
(unknown keys ignored) so that a newer service does not break this client.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, TypeGuard, TypeVar

ParameterValue = str | int | float | bool | None | list[Any]
W = TypeVar("W", bound="WireModel")
J = TypeVar("J", bound="DendroJob")

# Output names and file base names become path segments of storage URLs.
_SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-\[\]]*$")


class ValidationError(ValueError):
    """A value that the Dendro service would refuse."""


def is_str(v: Any) -> bool:
    return isinstance(v, str)


def is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    return (is_int(v) or isinstance(v, float)) and math.isfinite(v)


def is_str_list(v: Any) -> bool:
    return isinstance(v, list) and all(is_str(x) for x in v)


def is_safe_segment(v: Any) -> TypeGuard[str]:
    return is_str(v) and bool(_SAFE_SEGMENT.match(v)) and ".." not in v


def is_file_base_name(v: Any) -> bool:
    """A file name as the service accepts it (spaces, brackets, non-ASCII: `my output (1).txt`,
    `ç.txt`), short of what would leave its folder: no separator, NUL or control character,
    not '', '.' or '..'."""
    return is_str(v) and v not in ("", ".", "..") and not any(c in "/\\" or ord(c) < 32 or ord(c) == 127
                                                              for c in v)


def _is_scalar(v: Any) -> bool:
    return is_str(v) or is_bool(v) or is_number(v)


def is_parameter_value(v: Any) -> bool:
    """null, a string, number or boolean, or a list of strings, of numbers or of booleans
    (the service refuses a list mixing them)."""
    if v is None or _is_scalar(v):
        return True
    return isinstance(v, list) and any(all(check(x) for x in v) for check in (is_str, is_number, is_bool))


def _any(v: Any) -> bool:
    return True


def wire(check: Callable[[Any], bool], *, optional: bool = False, default: Any = MISSING,
         nested: type | None = None) -> Any:
    """Declare a wire field: its check, its nested model, and whether the key may be absent
    on the wire (`optional`: then it is never null either).  `default` is for Python callers."""
    if optional and default is MISSING:
        default = None
    if isinstance(default, list):
        return field(default_factory=list, metadata={"check": check, "optional": optional, "nested": nested})
    return field(default=default, metadata={"check": check, "optional": optional, "nested": nested})


class WireModel:
    """Dataclass mixin: validation on construction plus strict/lenient wire conversion."""

    def __post_init__(self) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            check, nested = f.metadata.get("check"), f.metadata.get("nested")
            value = getattr(self, f.name)
            if check is None or (value is None and f.metadata.get("optional")):
                continue
            if nested is not None:
                if not isinstance(value, list) or not all(isinstance(x, nested) for x in value):
                    raise ValidationError(f"{type(self).__name__}.{f.name} must be a list of {nested.__name__}")
            elif not check(value):
                raise ValidationError(f"invalid {type(self).__name__}.{f.name}: {value!r}")

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            if "check" not in f.metadata:
                continue
            value = getattr(self, f.name)
            if value is None and f.metadata.get("optional"):
                continue
            if f.metadata.get("nested") is not None:
                value = [x.to_wire() for x in value]
            out[f.name] = value
        return out

    @classmethod
    def from_wire(cls: type[W], data: Any, *, strict: bool = True) -> W:
        """Build from a decoded JSON object; `strict` rejects what the service rejects."""
        name = cls.__name__
        if not isinstance(data, dict):
            raise ValidationError(f"{name} must be an object")
        wire_fields = {f.name: f for f in fields(cls) if "check" in f.metadata}  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(wire_fields))
        if strict and unknown:
            raise ValidationError(f"unknown key in {name}: {unknown[0]}")
        kwargs: dict[str, Any] = {}
        for key, f in wire_fields.items():
            if key not in data:
                if strict and not f.metadata["optional"]:
                    raise ValidationError(f"missing key in {name}: {key}")
                continue
            value = data[key]
            if value is None and f.metadata["optional"] and strict:
                raise ValidationError(f"null is not allowed for {name}.{key}")
            nested = f.metadata["nested"]
            if nested is not None:
                if not isinstance(value, list):
                    raise ValidationError(f"{name}.{key} must be a list")
                value = [nested.from_wire(x, strict=strict) for x in value]
            kwargs[key] = value
        return cls(**kwargs)


@dataclass
class DendroJobOutputFile(WireModel):
    name: str = wire(is_safe_segment)
    fileBaseName: str = wire(is_file_base_name)
    urlDeterminedAtRuntime: bool | None = wire(is_bool, optional=True)
    # Set by submit_job so this object can be passed as a downstream input url.
    _special_job_output: Any = field(default=None, init=False, repr=False, compare=False)


@dataclass(frozen=True)
class SpecialJobOutput:
    """An output of a submitted job, usable as the `url` of a downstream input file."""

    job_id: str
    output_name: str
    url: str


@dataclass
class DendroJobInputFile(WireModel):
    name: str = wire(is_str)
    fileBaseName: str = wire(is_file_base_name)
    # A string, or before submission a SpecialJobOutput or an upstream DendroJobOutputFile.
    url: str | SpecialJobOutput | DendroJobOutputFile = wire(
        lambda v: isinstance(v, (str, SpecialJobOutput, DendroJobOutputFile)))


@dataclass
class DendroJobParameter(WireModel):
    name: str = wire(is_str)
    # Always sent, as null when unset: the service rejects a parameter without `value`.
    value: ParameterValue = wire(is_parameter_value, default=None)


@dataclass
class DendroJobDefinition(WireModel):
    appName: str = wire(is_str)
    processorName: str = wire(is_str)
    inputFiles: list[DendroJobInputFile] = wire(_any, nested=DendroJobInputFile)
    outputFiles: list[DendroJobOutputFile] = wire(_any, nested=DendroJobOutputFile)
    parameters: list[DendroJobParameter] = wire(_any, nested=DendroJobParameter)
    cacheBust: str | None = wire(is_str, optional=True)


@dataclass
class DendroJobRequiredResources(WireModel):
    numCpus: int = wire(is_int)
    numGpus: int = wire(is_int)
    memoryGb: float = wire(is_number)
    timeSec: float = wire(is_number)


@dataclass
class DendroJobOutputFileResult(WireModel):
    name: str = wire(is_str)
    fileBaseName: str = wire(is_str)
    url: str = wire(is_str)
    size: int | None = wire(is_number, optional=True)


def _opt_str(v: Any) -> bool:
    return v is None or is_str(v)


def _opt_number(v: Any) -> bool:
    return v is None or is_number(v)


@dataclass
class DendroJob(WireModel):
    """A job as the service returns it."""

    jobId: str = wire(is_str)
    jobPrivateKey: str | None = wire(_opt_str, default=None)
    serviceName: str = wire(is_str, default="")
    userId: str = wire(is_str, default="")
    batchId: str | None = wire(_opt_str, default=None)
    tags: list[str] = wire(is_str_list, default=[])
    jobDefinition: DendroJobDefinition | None = wire(_any, default=None)
    jobDefinitionHash: str = wire(is_str, default="")
    jobDependencies: list[str] = wire(is_str_list, default=[])
    requiredResources: DendroJobRequiredResources | None = wire(_any, default=None)
    targetComputeClientIds: list[str] | None = wire(_any, default=None)
    secrets: Any = wire(_any, default=None)
    inputFileUrlList: list[str] = wire(_any, default=[])
    outputFileUrlList: list[str] = wire(_any, default=[])
    outputFileResults: list[DendroJobOutputFileResult] = wire(_any, default=[], nested=DendroJobOutputFileResult)
    consoleOutputUrl: str = wire(is_str, default="")
    resourceUtilizationLogUrl: str = wire(is_str, default="")
    otherFileOutputs: Any = wire(_any, optional=True)
    timestampCreatedSec: float | None = wire(_opt_number, default=None)
    timestampStartingSec: float | None = wire(_opt_number, default=None)
    timestampStartedSec: float | None = wire(_opt_number, default=None)
    timestampFinishedSec: float | None = wire(_opt_number, default=None)
    timestampUpdatedSec: float | None = wire(_opt_number, default=None)
    canceled: bool = wire(is_bool, default=False)
    status: str = wire(is_str, default="pending")
    isRunnable: bool = wire(is_bool, default=False)
    error: str | None = wire(_opt_str, default=None)
    computeClientId: str | None = wire(_opt_str, default=None)
    computeClientName: str | None = wire(_opt_str, default=None)
    computeClientUserId: str | None = wire(_opt_str, default=None)
    imageUri: str | None = wire(_opt_str, default=None)

    @classmethod
    def from_wire(cls: type[J], data: Any, *, strict: bool = False) -> J:
        job = super().from_wire(data, strict=strict)
        # the nested objects come as they are on the wire (JSON objects): made models here
        definition: Any = job.jobDefinition
        if isinstance(definition, dict):
            job.jobDefinition = DendroJobDefinition.from_wire(definition, strict=False)
        resources: Any = job.requiredResources
        if isinstance(resources, dict):
            job.requiredResources = DendroJobRequiredResources.from_wire(resources, strict=False)
        return job

    def to_wire(self) -> dict[str, Any]:
        out = super().to_wire()
        for key in ("jobDefinition", "requiredResources"):
            if isinstance(out[key], WireModel):
                out[key] = out[key].to_wire()
        return out


# pairio, the prototype of this protocol, used these names.
PairioJobDefinition = DendroJobDefinition
PairioJobInputFile = DendroJobInputFile
PairioJobOutputFile = DendroJobOutputFile
PairioJobParameter = DendroJobParameter
PairioJobRequiredResources = DendroJobRequiredResources
