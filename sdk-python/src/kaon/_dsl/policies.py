"""Value objects for the parts of a definition that are not steps: params, resources,
constraints, retries, artifacts, triggers, notifications and run strategies.

Each knows how to write itself into its proto message; none checks what core checks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from google.protobuf import struct_pb2

from kaon._dsl.values import (
    Expr,
    OutputRef,
    Seconds,
    enum_value,
    fill_list,
    to_duration,
    to_plain,
)
from kaon.v1 import common_pb2, workflow_pb2

_MISSING: Any = object()

ParamTypeLike: TypeAlias = "type | str | int | None"

_PY_TYPES: dict[type, int] = {
    str: workflow_pb2.PARAM_TYPE_STRING,
    int: workflow_pb2.PARAM_TYPE_INT,
    float: workflow_pb2.PARAM_TYPE_DOUBLE,
    bool: workflow_pb2.PARAM_TYPE_BOOL,
    list: workflow_pb2.PARAM_TYPE_LIST,
    dict: workflow_pb2.PARAM_TYPE_MAP,
    object: workflow_pb2.PARAM_TYPE_JSON,
}


def _param_type(value: ParamTypeLike, where: str) -> int:
    if value is None:
        return workflow_pb2.PARAM_TYPE_UNSPECIFIED
    if isinstance(value, type):
        if value not in _PY_TYPES:
            raise ValueError(
                f"{where}: type {value.__name__} has no kaon param type; use str, int, float, "
                "bool, list, dict or 'json'"
            )
        return _PY_TYPES[value]
    aliases = {"str": "string", "float": "double", "dict": "map", "integer": "int"}
    if isinstance(value, str):
        value = aliases.get(value.lower(), value)
    return enum_value("PARAM_TYPE_", dict(workflow_pb2.ParamType.items()), value, where)


@dataclass
class Param:
    """A typed param: a literal default, a CEL expression, or neither (supplied per run).

    Example:
        `Param("country", str, default="US")`, `Param("dateint", int, expr="tsToDateInt(RUN_TS)")`,
        `Param("day", int, default=expr("dayFromDateInt(params.dateint)"))`.

    Attributes:
        name: Param name (letters, digits, `_`).
        type: `str`, `int`, `float`, `bool`, `list`, `dict`, or a kaon type name ("json").
        default: A literal value, or an `expr(...)`. Omitted when not given.
        expr: CEL expression source (alternative to `default=expr(...)`).
        required: A run must supply it.
        description: Shown in the UI and CLI help.
    """

    name: str
    type: ParamTypeLike = None
    default: Any = _MISSING
    expr: str | Expr | OutputRef | None = None
    required: bool = False
    description: str = ""

    def to_proto(self, where: str) -> workflow_pb2.Param:
        """Returns the `kaon.v1.Param` message."""
        out = workflow_pb2.Param(
            name=self.name,
            type=_param_type(self.type, f"{where}.type"),  # type: ignore[arg-type]
            required=self.required,
            description=self.description,
        )
        if self.expr is not None:
            out.expr = str(self.expr)
        if self.default is not _MISSING:
            if isinstance(self.default, (Expr, OutputRef)):
                out.expr = str(self.default)
            else:
                set_value(out.value, to_plain(self.default, f"{where}.value"))
        return out


def set_value(target: struct_pb2.Value, plain: Any) -> None:
    """Writes already-plain data into a (sub-message) Value, marking it present."""
    encoded = struct_pb2.Value()
    if plain is None:
        encoded.null_value = struct_pb2.NULL_VALUE
    elif isinstance(plain, bool):
        encoded.bool_value = plain
    elif isinstance(plain, (int, float)):
        encoded.number_value = float(plain)
    elif isinstance(plain, str):
        encoded.string_value = plain
    elif isinstance(plain, dict):
        encoded.struct_value.SetInParent()
        for key, item in plain.items():
            set_value(encoded.struct_value.fields[key], item)
    else:
        encoded.list_value.SetInParent()
        fill_list(encoded.list_value, plain)
    target.CopyFrom(encoded)


ParamsLike: TypeAlias = "Sequence[Param] | Mapping[str, Any] | None"


def _infer_type(value: Any) -> int:
    if isinstance(value, bool):
        return workflow_pb2.PARAM_TYPE_BOOL
    if isinstance(value, int):
        return workflow_pb2.PARAM_TYPE_INT
    if isinstance(value, float):
        return workflow_pb2.PARAM_TYPE_DOUBLE
    if isinstance(value, str):
        return workflow_pb2.PARAM_TYPE_STRING
    if isinstance(value, (list, tuple)):
        return workflow_pb2.PARAM_TYPE_LIST
    if isinstance(value, Mapping):
        return workflow_pb2.PARAM_TYPE_MAP
    return workflow_pb2.PARAM_TYPE_UNSPECIFIED


def params_to_proto(params: ParamsLike, where: str) -> list[workflow_pb2.Param]:
    """Compiles a list of `Param` or the `{name: literal | expr}` shorthand."""
    if not params:
        return []
    out: list[workflow_pb2.Param] = []
    if isinstance(params, Mapping):
        for name, value in params.items():
            at = f"{where}.{name}"
            if isinstance(value, Param):
                out.append(value.to_proto(at))
            elif isinstance(value, (Expr, OutputRef)):
                out.append(workflow_pb2.Param(name=name, expr=str(value)))
            else:
                param = workflow_pb2.Param(name=name, type=_infer_type(value))  # type: ignore[arg-type]
                set_value(param.value, to_plain(value, f"{at}.value"))
                out.append(param)
        return out
    for i, item in enumerate(params):
        if not isinstance(item, Param):
            raise TypeError(f"{where}[{i}]: expected kaon.Param, got {item!r}")
        out.append(item.to_proto(f"{where}[{i}]"))
    return out


@dataclass
class Resources:
    """What each attempt of a step needs. 0 means the server default.

    Attributes:
        cpus: CPU cores (fractions allowed).
        mem_mb: Memory in MiB.
        gpus: Whole GPUs.
        disk_mb: Scratch disk in MiB.
    """

    cpus: float = 0
    mem_mb: float = 0
    gpus: float = 0
    disk_mb: float = 0

    def to_proto(self) -> common_pb2.Resources:
        """Returns the `kaon.v1.Resources` message."""
        return common_pb2.Resources(
            cpus=self.cpus, mem_mb=self.mem_mb, gpus=self.gpus, disk_mb=self.disk_mb
        )


@dataclass
class Constraint:
    """A placement rule over agent attributes, e.g. `Constraint("pool", "equals", "gpu")`.

    Attributes:
        attribute: Agent attribute name, or "hostname".
        operator: "equals", "not_equals", "like", "exists" or "unique".
        value: Operand for equals/not_equals (literal) and like (RE2 pattern).
        soft: A preference rather than a rule.
    """

    attribute: str
    operator: str | int = "equals"
    value: str = ""
    soft: bool = False

    def to_proto(self, where: str) -> workflow_pb2.Constraint:
        """Returns the `kaon.v1.Constraint` message."""
        op = enum_value(
            "CONSTRAINT_OPERATOR_",
            dict(workflow_pb2.ConstraintOperator.items()),
            self.operator,
            f"{where}.operator",
        )
        return workflow_pb2.Constraint(
            attribute=self.attribute,
            operator=op,  # type: ignore[arg-type]
            value=self.value,
            soft=self.soft,
        )


@dataclass
class Retry:
    """Retries with exponential backoff.

    Attributes:
        max_attempts: Total attempts including the first.
        initial_backoff: Wait before the second attempt (seconds or timedelta); server default 1s.
        backoff_multiplier: Growth per attempt; server default 2.
        max_backoff: Cap on the wait; server default 5m.
        retry_on: Failure kinds: "exit_code", "timeout", "lost"; empty means all.
        exit_codes: For "exit_code": only these codes retry; empty means any non-zero.
    """

    max_attempts: int
    initial_backoff: Seconds | None = None
    backoff_multiplier: float = 0
    max_backoff: Seconds | None = None
    retry_on: Sequence[str | int] = ()
    exit_codes: Sequence[int] = ()

    def to_proto(self, where: str) -> workflow_pb2.RetryPolicy:
        """Returns the `kaon.v1.RetryPolicy` message."""
        out = workflow_pb2.RetryPolicy(
            max_attempts=self.max_attempts,
            backoff_multiplier=self.backoff_multiplier,
            exit_codes=list(self.exit_codes),
        )
        if self.initial_backoff is not None:
            out.initial_backoff.CopyFrom(
                to_duration(self.initial_backoff, f"{where}.initial_backoff")
            )
        if self.max_backoff is not None:
            out.max_backoff.CopyFrom(to_duration(self.max_backoff, f"{where}.max_backoff"))
        names = dict(workflow_pb2.RetryOn.items())
        out.retry_on.extend(
            enum_value("RETRY_ON_", names, kind, f"{where}.retry_on[{i}]")  # type: ignore[misc]
            for i, kind in enumerate(self.retry_on)
        )
        return out


@dataclass
class Artifact:
    """A data artifact reference: a name plus partition keys (values may hold `${ <CEL> }`).

    Attributes:
        name: Artifact name, e.g. "models.regional".
        partitions: Partition key templates, e.g. `{"region": "${foreach.value}"}`.
        uri: URI template announced with an output artifact.
    """

    name: str
    partitions: Mapping[str, str] = field(default_factory=dict)
    uri: str = ""

    def to_proto(self) -> workflow_pb2.ArtifactRef:
        """Returns the `kaon.v1.ArtifactRef` message."""
        return workflow_pb2.ArtifactRef(
            name=self.name, partitions=dict(self.partitions), uri=self.uri
        )


@dataclass
class _TriggerBase:
    id: str
    params: ParamsLike = None
    disabled: bool = False

    def _base(self, where: str) -> workflow_pb2.Trigger:
        return workflow_pb2.Trigger(
            id=self.id,
            params=params_to_proto(self.params, f"{where}.params"),
            disabled=self.disabled,
        )


@dataclass
class CronTrigger(_TriggerBase):
    """Starts runs on a cron schedule; RUN_TS is the planned fire time.

    Attributes:
        id: Trigger id, unique within the workflow.
        expression: Five- or six-field cron expression, e.g. "0 3 * * *".
        timezone: IANA timezone; server default UTC.
        params: Params of the runs it starts.
        disabled: A disabled trigger does not fire.
    """

    expression: str = ""
    timezone: str = ""

    def to_proto(self, where: str) -> workflow_pb2.Trigger:
        """Returns the `kaon.v1.Trigger` message."""
        out = self._base(where)
        out.cron.CopyFrom(
            workflow_pb2.CronTrigger(expression=self.expression, timezone=self.timezone)
        )
        out.cron.SetInParent()
        return out


@dataclass
class ArtifactTrigger(_TriggerBase):
    """Starts a run when a matching artifact partition is announced.

    Attributes:
        id: Trigger id, unique within the workflow.
        name: Artifact name.
        partitions: Only partitions with these key values fire; empty matches all.
        params: Params of the runs it starts (expressions see `trigger.*`).
        disabled: A disabled trigger does not fire.
    """

    name: str = ""
    partitions: Mapping[str, str] = field(default_factory=dict)

    def to_proto(self, where: str) -> workflow_pb2.Trigger:
        """Returns the `kaon.v1.Trigger` message."""
        out = self._base(where)
        out.artifact.CopyFrom(
            workflow_pb2.ArtifactTrigger(name=self.name, partitions=dict(self.partitions))
        )
        out.artifact.SetInParent()
        return out


@dataclass
class SignalTrigger(_TriggerBase):
    """Starts a run when a named signal is sent (TriggerService.Signal).

    Attributes:
        id: Trigger id, unique within the workflow.
        name: Signal name.
        params: Params of the runs it starts (expressions see `trigger.*`).
        disabled: A disabled trigger does not fire.
    """

    name: str = ""

    def to_proto(self, where: str) -> workflow_pb2.Trigger:
        """Returns the `kaon.v1.Trigger` message."""
        out = self._base(where)
        out.signal.CopyFrom(workflow_pb2.SignalTrigger(name=self.name))
        out.signal.SetInParent()
        return out


Trigger: TypeAlias = "CronTrigger | ArtifactTrigger | SignalTrigger"


@dataclass
class Notification:
    """POST a JSON summary of a run outcome to a webhook.

    Attributes:
        webhook_url: Where to POST.
        on: Run status names that notify (e.g. "FAILED", "SUCCEEDED"); empty means failures.
    """

    webhook_url: str
    on: Sequence[str] = ()

    def to_proto(self) -> workflow_pb2.Notification:
        """Returns the `kaon.v1.Notification` message."""
        return workflow_pb2.Notification(on=list(self.on), webhook_url=self.webhook_url)


@dataclass
class RunStrategy:
    """How concurrent runs of a workflow interact.

    Attributes:
        mode: "parallel", "sequential", "skip_if_running" or "cancel_previous".
        max_concurrent_runs: For "parallel": most runs at once; 0 means unlimited.
    """

    mode: str | int = "parallel"
    max_concurrent_runs: int = 0

    def to_proto(self, where: str) -> workflow_pb2.RunStrategy:
        """Returns the `kaon.v1.RunStrategy` message."""
        mode = enum_value(
            "RUN_STRATEGY_MODE_",
            dict(workflow_pb2.RunStrategyMode.items()),
            self.mode,
            f"{where}.mode",
        )
        out = workflow_pb2.RunStrategy(
            mode=mode,  # type: ignore[arg-type]
            max_concurrent_runs=self.max_concurrent_runs,
        )
        out.SetInParent()
        return out
